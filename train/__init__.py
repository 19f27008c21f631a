"""The command lines: absl flags, then one call into `cinc_tfp` each.

From a checkout, `python -m train.train` (`evaluate`, `sample`, `export`);
installed, the console scripts `cinc-train` and so on run the same modules as
`cinc_tfp.commands`. The modules import each other relatively, so both work.
"""
