"""What the train/ commands share: one-line errors and the `app.run` wrapper.

Their flags are `cli_flags`'; the run directory itself (config.json,
checkpoints, the trained flow) is `cinc_tfp.run`'s. Expected failures (bad
data, a bad model configuration, a checkpoint or export problem, divergence)
end a command with one line, `error: ...`, on stderr and exit status 1: see
`report_errors`.
"""

import re
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from cinc_tfp import data
from cinc_tfp import export
from cinc_tfp import run as run_lib
from . import cli_flags


class TrainError(Exception):
  """An expected failure of a command, reported as one line."""


EXPECTED_ERRORS = (TrainError, run_lib.RunError, data.DataError,
                   export.ExportError)
# Failures of the file system (a path that vanished, a full disk, no
# permission) are the user's to fix, not bugs: also one line.
FILE_ERRORS = (OSError, tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
               tf.errors.ResourceExhaustedError)
INTERRUPTED_STATUS = 130  # As a shell reports a command ended by SIGINT.


def one_line(error):
  """`error`'s message (or any text) on one line, without TensorFlow's op
  decorations."""
  message = re.sub(r'\{\{function_node [^}]*\}\}|\[Op:\w+\]', '',
                   str(error))
  return ' '.join(message.split()) or type(error).__name__


def show_in_helpshort(*modules):
  """Makes the flags of `modules` those `--helpshort` lists, and the first
  one's docstring its text. absl lists the flags of the module that
  `sys.argv[0]` names and prints the docstring of `__main__`: for a console
  script (`cinc-train`), the script, not the module that defines them."""
  script = sys.modules['__main__']
  if script.__doc__ is None:
    script.__doc__ = modules[0].__doc__
  for module in modules:
    for flag in flags.FLAGS.get_key_flags_for_module(module):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def report_errors(run, flag_values):
  """`run(flag_values)`, ending the process on an expected failure: an error
  of `EXPECTED_ERRORS` or `FILE_ERRORS` prints `error: MESSAGE` (the
  message on one line) to stderr and exits with status 1, without a
  traceback; Ctrl-C prints one line and exits with status 130. Anything
  else is a bug and keeps its traceback."""
  try:
    return run(flag_values)
  except EXPECTED_ERRORS + FILE_ERRORS as error:
    print(f'error: {one_line(error)}', file=sys.stderr, flush=True)
    sys.exit(1)
  except KeyboardInterrupt:
    print('error: interrupted; the newest checkpoint (if any) is kept, and '
          'the same command resumes from it.', file=sys.stderr, flush=True)
    sys.exit(INTERRUPTED_STATUS)


def run_main(run):
  """`app.run` of `run(flags.FLAGS)` under `report_errors`.

  Positional arguments are an error (every option is a flag). Python logging
  shows warnings and errors unless `--verbosity` is given.
  """

  def main(argv):
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)  # TF's INFO lines are noise here.

    def run_without_arguments(flag_values):
      if len(argv) > 1:
        raise TrainError(
            f'unexpected arguments {argv[1:]}; options are --flags.')
      run(flag_values)

    report_errors(run_without_arguments, flags.FLAGS)

  show_in_helpshort(sys.modules[run.__module__], cli_flags)
  app.run(main)
