"""Benchmarks of cinc_tfp: `python -m benchmarks NAME`, NAME one of `layers`,
`models`, `memory`, `drift` and `quality` (see `__main__`).

`harness` times and tabulates, side by side in one process; each benchmark is
the module of its name; `pixel_loop` is the compiled pixel-by-pixel baseline
the `layers` benchmark compares the CInC inverse with. The targets are in the
README.
"""
