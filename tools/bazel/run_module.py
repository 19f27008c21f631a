"""Template of the main of each //:cinc-COMMAND binary: runs one Python module as
`python -m` does.

The commands in train/ and benchmarks/ import their package's modules
relatively (so that they run both from a checkout, as `train.train`, and
installed, as `cinc_tfp.commands.train`), which a file run as a script cannot
do. A genrule in //:BUILD writes `cinc_COMMAND_main.py` from this file with
`__MODULE__` replaced by the command's module; a binary's `args` would not
do, since Bazel passes them under `bazel run` only, not to `bazel-bin/cinc-COMMAND`.
"""

import runpy

runpy.run_module('__MODULE__', run_name='__main__', alter_sys=True)
