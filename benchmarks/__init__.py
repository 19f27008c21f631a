"""Benchmarks of cinc_tfp, run side by side: `python -m benchmarks layers|models`.

`harness` times and tabulates; `layers` and `models` are the two benchmarks;
`pixel_loop` is the compiled pixel-by-pixel baseline the `layers` benchmark
compares the CInC inverse with. The targets are in the README.
"""
