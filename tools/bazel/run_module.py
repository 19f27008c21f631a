"""Main of the //:COMMAND binaries: runs a Python module as `python -m` does.

The commands in train/ and benchmarks/ import their package's modules
relatively (so that they run both from a checkout, as `train.train`, and
installed, as `cinc_tfp.commands.train`), which a file run as a script cannot
do. Each `py_binary` names its module as its first argument; the rest are
the command's flags.
"""

import runpy
import sys

if __name__ == '__main__':
  module = sys.argv.pop(1)
  runpy.run_module(module, run_name='__main__', alter_sys=True)
