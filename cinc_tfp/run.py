"""A training run's directory: its configuration, checkpoints and trained flow.

A run lives in one directory, local or on any filesystem `tf.io.gfile`
serves (`gs://...`, TensorFlow's in-memory `ram://...`):

- `config.json`: every option that fixes the model or the course of training
  (`RUN_KEYS`): the flow's constructor arguments, the data (dataset, image
  size, channels, bits) and the optimizer settings. Written atomically when a
  run first starts; a later start in the same directory must use the same
  options (`RunDirectory.check_config`).
- `ckpt-STEP.*` and the index `checkpoint`: `tf.train.Checkpoint`s of every
  weight (the ActNorms' `initialized` flags included) and of the optimizer
  (its step counter, moments and averaged weights), the newest
  `KEEP_CHECKPOINTS` kept by `tf.train.CheckpointManager`.
- what `train.train` writes at the end: `tensorboard/`, `samples.png`,
  `saved_model/`.

Paths are resolved once, by `resolve`, when a `RunDirectory` is made: a
relative, `./` or `~` path becomes absolute (symlinks are kept as named), a
`scheme://` path is kept as it is. Every later path is joined to that one,
and checkpoint paths come from the index as TensorFlow resolves them.

A checkpoint that does not restore exactly (unreadable bytes, a missing file,
variables of other shapes or names) is a `RunError`, and the objects it was
restored into are given up silently (no "unrestored value" warnings follow).
"""

import json
import math
import os

import numpy as np
import tensorflow as tf

from cinc_tfp import config as config_lib
from cinc_tfp import data
from cinc_tfp import export
from cinc_tfp import flow
from cinc_tfp import training
from cinc_tfp import _paths
from cinc_tfp._paths import resolve

__all__ = [
    'CONFIG_FILE', 'RUN_KEYS', 'MODEL_KEYS', 'RunDirectory', 'RunError',
    'TrainedFlow', 'build_model', 'build_optimizer', 'check_writable',
    'mean_bits_per_dim', 'resolve', 'restore', 'sample_grid',
    'training_stream'
]

CONFIG_FILE = 'config.json'
CHECKPOINT_PREFIX = 'ckpt'
KEEP_CHECKPOINTS = 3

# Keys of config.json, in order: the data, the model, then the optimizer.
MODEL_KEYS = tuple(option.name for option in config_lib.FlowConfig.options())
DATA_KEYS = ('dataset', 'image_size', 'channels')
OPTIMIZER_KEYS = ('batch_size', 'optimizer', 'learning_rate', 'warmup_steps',
                  'ema')
RUN_KEYS = DATA_KEYS + MODEL_KEYS + OPTIMIZER_KEYS

# The JSON types of config.json's values (the others are ints).
_STRING_KEYS = ('dataset', 'optimizer') + tuple(
    option.name for option in config_lib.FlowConfig.options()
    if option.metadata['choices'] is not None)
_FLOAT_KEYS = ('learning_rate', 'ema')
_BOOL_KEYS = tuple(option.name for option in config_lib.FlowConfig.options()
                   if option.metadata['boolean'])
# Keys added after runs were first written, with the value those runs had.
_ADDED_KEYS = {'recompute': False}


class RunError(Exception):
  """A run directory, configuration or checkpoint that cannot be used."""


def check_writable(path, name, directory):
  """Raises a `RunError` unless `path` can be created or written.

  For a check before any work, so that a command never computes for nothing
  or stops half-way. `name`: what the message calls the path (`--output`);
  `directory`: whether `path` names a directory (else a file). Remote paths
  (`scheme://`) are left to the write itself.
  """
  if _paths.is_remote(path):
    return
  path = resolve(path)
  if os.path.exists(path):
    if directory and not os.path.isdir(path):
      raise RunError(f'{name}={path} is a file, not a directory.')
    if not directory and os.path.isdir(path):
      raise RunError(f'{name}={path} is a directory, not a file.')
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise RunError(f'Cannot create {name}={path}: {parent} is a file.')
  if not os.access(parent, os.W_OK | os.X_OK):
    raise RunError(f'Cannot write {name}={path}: {parent} is not writable.')


def _has_config_type(key, value):
  if key in _STRING_KEYS:
    return isinstance(value, str)
  if key in _BOOL_KEYS or isinstance(value, bool):
    return key in _BOOL_KEYS and isinstance(value, bool)
  if key in _FLOAT_KEYS:
    return isinstance(value, (int, float)) and math.isfinite(value)
  return isinstance(value, int)


class RunDirectory:
  """The directory of one training run (see the module docstring).

  Attributes:
    path: the directory, as `resolve` gives it.
  """

  def __init__(self, path):
    self.path = resolve(path)

  def __repr__(self):
    return f'RunDirectory({self.path!r})'

  def join(self, *names):
    """The path of `names` inside the run directory."""
    return os.path.join(self.path, *names)

  # config.json.

  def read_config(self):
    """The saved run configuration (a dict of `RUN_KEYS`), or None."""
    path = self.join(CONFIG_FILE)
    if not tf.io.gfile.exists(path):
      return None
    try:
      with tf.io.gfile.GFile(path) as file:
        config = json.load(file)
    except ValueError as error:
      raise RunError(f'{path} is not valid JSON: {error}') from error
    if not isinstance(config, dict):
      raise RunError(f'{path} is not a run configuration: not a JSON object.')
    config = dict(_ADDED_KEYS, **config)
    missing = [key for key in RUN_KEYS if key not in config]
    if missing:
      raise RunError(f'{path} is not a run configuration: it lacks {missing}.')
    wrong = [f'{key} ({config[key]!r})' for key in RUN_KEYS
             if not _has_config_type(key, config[key])]
    if wrong:
      raise RunError(
          f'{path} has values of the wrong type: {", ".join(wrong)}.')
    return config

  def check_config(self, config):
    """Raises a RunError naming the keys where `config` differs from the
    saved one (if any)."""
    saved = self.read_config()
    if saved is None:
      return
    differ = [key for key in RUN_KEYS if saved[key] != config[key]]
    if differ:
      changes = ', '.join(f'{key}: {saved[key]!r} saved, {config[key]!r} now'
                          for key in differ)
      raise RunError(
          f'{self.path} holds a run with other options ({changes}); resume '
          f'with the same options or use another run directory.')

  def write_config(self, config):
    """Writes `config.json` atomically."""
    tf.io.gfile.makedirs(self.path)
    path = self.join(CONFIG_FILE)
    temporary = path + '.tmp'
    with tf.io.gfile.GFile(temporary, 'w') as file:
      json.dump({key: config[key] for key in RUN_KEYS}, file, indent=2)
    tf.io.gfile.rename(temporary, path, overwrite=True)

  # Checkpoints.

  def latest_checkpoint(self):
    """Path prefix of the newest checkpoint, or None if there is none.

    A checkpoint index that can't be read, or that names files that are not
    there, is a RunError (never a silent fresh start).
    """
    try:
      state = tf.train.get_checkpoint_state(self.path)
    except Exception as error:  # Protobuf text errors have no common base.
      raise RunError(
          f'Cannot read the checkpoint index {self.join("checkpoint")}: '
          f'{_first_line(error)}') from error
    if state is None or not state.model_checkpoint_path:
      found = tf.io.gfile.glob(self.join(f'{CHECKPOINT_PREFIX}-*.index'))
      if found:
        raise RunError(
            f'{self.path} holds checkpoint files ({os.path.basename(found[0])}'
            f', ...) but no readable checkpoint index ("checkpoint" file).')
      return None
    # TensorFlow has joined a relative entry to the directory already.
    path = state.model_checkpoint_path
    if not tf.io.gfile.exists(path + '.index'):
      raise RunError(f'The checkpoint index in {self.path} names {path}, '
                     f'whose files are missing.')
    return path

  def checkpoint_manager(self, checkpoint, directory=None, step_counter=None,
                         interval=None):
    """A `tf.train.CheckpointManager` of `checkpoint` that writes
    `ckpt-STEP` files to `directory` (default: the run directory), with
    `save()` due every `interval` steps of `step_counter` after its value
    now (the step of the checkpoint restored, or 0)."""
    return tf.train.CheckpointManager(
        checkpoint, directory or self.path, KEEP_CHECKPOINTS,
        checkpoint_name=CHECKPOINT_PREFIX, step_counter=step_counter,
        checkpoint_interval=interval,
        last_checkpoint_step=(None if step_counter is None
                              else int(step_counter.numpy())))

  def restore_for_inference(self):
    """The trained flow, from config.json and the newest checkpoint, with
    the averaged (EMA) weights when the run kept them.

    Returns:
      `(model, config, step)`.
    """
    if not tf.io.gfile.isdir(self.path):
      raise RunError(f'Run directory {self.path} does not exist.')
    config = self.read_config()
    if config is None:
      raise RunError(f'{self.path} holds no {CONFIG_FILE}: not a run '
                     f'directory of train.train.')
    path = self.latest_checkpoint()
    if path is None:
      raise RunError(f'{self.path} holds no checkpoint yet.')
    model = build_model(config)
    optimizer = build_optimizer(config, model.trainable_variables)
    restore(tf.train.Checkpoint(model=model, optimizer=optimizer), path)
    training.use_averaged_weights(model, optimizer)
    return model, config, int(optimizer.iterations.numpy())


def build_model(config):
  """The `CIncFlow` of a run configuration (a dict with `RUN_KEYS`)."""
  try:
    return flow.CIncFlow(
        image_shape=(config['image_size'], config['image_size'],
                     config['channels']),
        **{key: config[key] for key in MODEL_KEYS})
  except ValueError as error:
    raise RunError(str(error)) from error


def build_optimizer(config, variables):
  """The run's optimizer (`cinc_tfp.training.optimizer`), built for
  `variables` so that a checkpoint restores into it at once."""
  return training.optimizer(config['optimizer'], config['learning_rate'],
                            config['warmup_steps'], config['ema'], variables)


def restore(checkpoint, path):
  """Restores `checkpoint` (a `tf.train.Checkpoint`) from `path`, exactly.

  The checkpoint's variables (names, shapes, dtypes) are compared with what
  `checkpoint` holds before anything is restored, so a checkpoint of another
  model fails at once and changes nothing.

  Raises:
    RunError: the files are unreadable, or do not hold a value of the right
      shape for every variable of the model and optimizer.
  """
  try:
    differences = _differences(checkpoint, path)
    if differences:
      raise RunError(
          f'Cannot restore checkpoint {path}: it is a checkpoint of another '
          f'model ({differences}).')
    status = checkpoint.restore(path)
    try:
      status.assert_consumed()
    except AssertionError:
      status.expect_partial()  # Given up: no warnings about it later.
      raise
  except RunError:
    raise
  except Exception as error:  # Bad bytes raise IndexError, OpError, ...
    raise RunError(
        f'Cannot restore checkpoint {path}: {_first_line(error)} (a corrupt '
        f'file, or a checkpoint of another model).') from error


def _differences(checkpoint, path):
  """Where the variables saved at `path` differ from those of `checkpoint`,
  in words ('' if they match), from a write of `checkpoint` to memory."""
  scratch = f'ram://cinc_tfp_restore_check/{os.getpid()}-{id(checkpoint)}/ckpt'
  written = checkpoint.write(scratch)
  try:
    expected = _saved_variables(written)
  finally:
    for file in tf.io.gfile.glob(scratch + '*'):
      tf.io.gfile.remove(file)
  found = _saved_variables(path)
  # Names say little (a variable is saved under its first path, often the
  # optimizer's list of weights): count, and show one shape.
  reshaped = [(found[name], expected[name]) for name in expected
              if name in found and found[name] != expected[name]]
  missing = len(set(expected) - set(found))
  extra = len(set(found) - set(expected))
  problems = []
  if reshaped:
    problems.append(f'{len(reshaped)} variables of other shapes, e.g. '
                    f'{reshaped[0][0]} saved where this model has '
                    f'{reshaped[0][1]}')
  if missing:
    problems.append(f'{missing} variables of this model missing')
  if extra:
    problems.append(f'{extra} variables this model lacks')
  return '; '.join(problems)


def _saved_variables(path):
  """{name: shape} of the variables of the checkpoint with prefix `path`
  (read as a prefix even on `ram://`, where a prefix is also a directory),
  without its object graph and save counter."""
  shapes = tf.compat.v1.train.NewCheckpointReader(
      path).get_variable_to_shape_map()
  return {name.replace('/.ATTRIBUTES/VARIABLE_VALUE', ''): shape
          for name, shape in shapes.items()
          if not name.startswith(('_CHECKPOINTABLE_OBJECT_GRAPH',
                                  'save_counter/'))}


def training_stream(images, config):
  """The training batches of a run: a function of `config['seed']` alone.

  The `uint8` images are repeated, then shuffled with the same seeds on
  every iteration, batched and dequantized (`data.pipeline`): every new
  iterator yields the same stream, so `stream.skip(step)` takes it up where
  a checkpoint of step `step` left it. Sharded by data under `tf.distribute`.
  """
  shuffled = images.repeat().shuffle(
      data.SHUFFLE_BUFFER, seed=config['seed'],
      reshuffle_each_iteration=False)
  stream = data.pipeline(shuffled, config['batch_size'], config['n_bits'],
                         shuffle=False, seed=config['seed'])
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return stream.with_options(options)


class TrainedFlow:
  """A trained flow for inference, from a run directory or a SavedModel.

  Attributes:
    image_shape: `(H, W, C)`.
    n_bits: bit depth of the data it models.
    dataset: the dataset it was trained on, or None if unknown.
  """

  def __init__(self, bits_per_dim, encode, decode, sample, image_shape,
               n_bits, dataset=None, keep_alive=None):
    self._keep_alive = keep_alive  # What the functions need to stay alive.
    self.bits_per_dim = bits_per_dim
    self.encode = encode
    self.decode = decode
    self._sample = sample
    self.image_shape = tuple(image_shape)
    self.n_bits = n_bits
    self.dataset = dataset

  @classmethod
  def from_run_directory(cls, path):
    """The flow of a run's newest checkpoint (EMA weights if kept)."""
    model, config, _ = RunDirectory(path).restore_for_inference()
    images = tf.TensorSpec([None, *model.image_shape], tf.float32)
    latents = tf.TensorSpec([None, model.num_dims], tf.float32)
    return cls(tf.function(model.bits_per_dim, input_signature=[images]),
               tf.function(model.encode, input_signature=[images]),
               tf.function(model.decode, input_signature=[latents]),
               tf.function(model.sample), model.image_shape, model.n_bits,
               config['dataset'])

  @classmethod
  def from_saved_model(cls, path):
    """The flow of a `cinc_tfp.export` SavedModel."""
    loaded = export.load(path)

    def sample(n, temperature, seed):
      return loaded.sample(tf.constant(n, tf.int32), temperature,
                           seed)['images']

    # The loaded functions hold weak references to `loaded`: keep it.
    return cls(lambda x: loaded.bits_per_dim(x)['bits_per_dim'],
               lambda x: loaded.encode(x)['latents'],
               lambda z: loaded.decode(z)['images'], sample,
               [int(s) for s in loaded.image_shape.numpy()],
               int(loaded.n_bits.numpy()), keep_alive=loaded)

  def sample(self, n, temperature, seed):
    """`n` float images at `temperature`; `seed` is a pair of ints."""
    return self._sample(n, tf.constant(temperature, tf.float32),
                        tf.constant(seed, tf.int32))

  def interpolate(self, endpoints, steps, seed):
    """Float images decoded at `steps + 2` evenly spaced points of the line
    between the latents of two `uint8` images `endpoints` (dequantized with
    `seed`), both ends included."""
    x = data.dequantize(endpoints, self.n_bits, seed=tf.constant([seed, 0]))
    z = self.encode(x)
    alphas = tf.linspace(0., 1., steps + 2)[:, None]
    return self.decode((1. - alphas) * z[0] + alphas * z[1])


def mean_bits_per_dim(bits_fn, images, n_bits, batch_size=256, seed=0):
  """Mean bits/dim over every image of a `uint8` dataset.

  Each image is dequantized with a fixed seed (`data.pipeline`), so the
  number is reproducible; the mean is over images (a last partial batch
  counts by its size).
  """
  batches = data.pipeline(images, batch_size, n_bits, shuffle=False,
                          seed=seed, drop_remainder=False)
  total, count = 0.0, 0
  for batch in batches:
    bits = np.asarray(bits_fn(batch), np.float64)
    total += float(bits.sum())
    count += bits.size
  if not count:
    raise RunError('The evaluation split holds no image.')
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


def _first_line(error):
  lines = str(error).strip().splitlines()
  return ' '.join(lines[0].split()) if lines else type(error).__name__
