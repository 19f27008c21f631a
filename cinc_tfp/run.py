"""A training run's directory: its configuration, checkpoints and trained flow.

A run lives in one directory, local or on any filesystem `tf.io.gfile`
serves (`gs://...`, TensorFlow's in-memory `ram://...`):

- `config.json`: every option that fixes the model or the course of training
  (`RUN_KEYS`): the flow's constructor arguments, the data (dataset, an image
  folder's path made absolute; image size, channels, bits) and the optimizer
  settings. Written atomically when a run first starts; a later start in the
  same directory must use the same options (`RunDirectory.check_config`).
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
from cinc_tfp import _errors
from cinc_tfp import _paths
from cinc_tfp._paths import resolve

__all__ = [
    'CONFIG_FILE', 'RUN_KEYS', 'MODEL_KEYS', 'RunDirectory', 'RunError',
    'TrainedFlow', 'build_model', 'build_optimizer', 'check_writable',
    'class_grid', 'cycled_labels', 'evaluate', 'image_shape', 'load_split',
    'resolve', 'resolved', 'restore', 'sample_grid', 'training_stream'
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
_OPTIONAL_KEYS = tuple(option.name
                       for option in config_lib.FlowConfig.options()
                       if option.metadata['optional'] and
                       not option.metadata['boolean'])
# Switches whose default `None` FlowConfig resolves from other options: a run
# records the resolved value, and resuming it with the switch unset keeps it.
_RESOLVED_KEYS = tuple(option.name
                       for option in config_lib.FlowConfig.options()
                       if option.metadata['optional'] and
                       option.metadata['boolean'])
# Keys added after runs were first written, with the value those runs had.
_ADDED_KEYS = {'recompute': False, 'num_classes': None,
               'reverse_channels': False}


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
  # The nearest existing folder, in which the path is made or replaced.
  parent = path if directory else os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise RunError(f'Cannot create {name}={path}: {parent} is a file.')
  if not os.access(parent, os.W_OK | os.X_OK):
    raise RunError(f'Cannot write {name}={path}: {parent} is not writable.')


def _has_config_type(key, value):
  if value is None:
    return key in _OPTIONAL_KEYS
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
    # A folder saved by a run before paths were resolved is read from here.
    saved = dict(saved, dataset=data.canonical_name(saved['dataset']))
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
          f'{_errors.first_line(error)}') from error
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
      what = 'is a file, not a directory' if tf.io.gfile.exists(
          self.path) else 'does not exist'
      raise RunError(f'Run directory {self.path} {what}.')
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


def resolved(config, saved=None):
  """`config` (a dict of run keys) with every model option as
  `config_lib.FlowConfig` resolves it (defaults filled in, `None` defaults
  made explicit), so that `config.json` records the flow trained even if a
  default changes later; a bad option is a `RunError`. Given the `saved`
  configuration of a run being resumed, a switch left unset (`None`) takes
  its saved value rather than today's default."""
  if saved is not None:
    config = dict(config, **{key: saved[key] for key in _RESOLVED_KEYS
                             if config.get(key) is None})
  try:
    options = config_lib.FlowConfig(
        image_shape(config),
        **{key: config[key] for key in MODEL_KEYS if key in config}).as_dict()
  except ValueError as error:
    raise RunError(str(error)) from error
  return dict(config, **{key: options[key] for key in MODEL_KEYS})


def image_shape(config):
  """`(H, W, C)` of the images of a run configuration."""
  return config['image_size'], config['image_size'], config['channels']


def build_model(config):
  """The `CIncFlow` of a run configuration (a dict with `RUN_KEYS`)."""
  try:
    return flow.CIncFlow(image_shape=image_shape(config),
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
        f'Cannot restore checkpoint {path}: {_errors.first_line(error)} (a '
        f'corrupt file, or a checkpoint of another model).') from error


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

  The `uint8` images are repeated, shuffled, batched and dequantized by
  `data.pipeline`, which does not depend on TensorFlow's global seed. Every
  new iterator yields the same stream, so `stream.skip(step)` takes it up
  where a checkpoint of step `step` left it. Sharded by data under
  `tf.distribute`.
  """
  stream = data.pipeline(images, config['batch_size'], config['n_bits'],
                         repeat=True, seed=config['seed'])
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return stream.with_options(options)


class TrainedFlow:
  """A trained flow for inference, from a run directory or a SavedModel.

  Both serve the functions of `cinc_tfp.export` (the run directory's in
  memory, `export.serving_module`), so they behave alike. Methods take and
  give float images and latents; a class-conditional flow takes `labels`
  (one int per image, or one for all) and classifies.

  Attributes:
    image_shape: `(H, W, C)`.
    n_bits: bit depth of the data it models.
    num_classes: classes of a class-conditional flow, else None.
    dataset: the dataset it was trained on, or None if unknown.
  """

  def __init__(self, served, dataset=None):
    self._served = served  # The functions hold weak references to it.
    self.image_shape = tuple(int(s) for s in served.image_shape.numpy())
    self.n_bits = int(served.n_bits.numpy())
    self.num_classes = int(getattr(served, 'num_classes', 0)) or None
    self.dataset = dataset

  @classmethod
  def from_run_directory(cls, path):
    """The flow of a run's newest checkpoint (EMA weights if kept)."""
    model, config, _ = RunDirectory(path).restore_for_inference()
    return cls(export.serving_module(model), config['dataset'])

  @classmethod
  def from_model(cls, model, dataset=None):
    """The flow of a `CIncFlow` in memory, on its current weights."""
    return cls(export.serving_module(model), dataset)

  @classmethod
  def from_saved_model(cls, path):
    """The flow of a `cinc_tfp.export` SavedModel."""
    return cls(export.load(path))

  def _labels(self, labels, count):
    """`()` for an unconditional flow, else `(int32 [count] labels,)`."""
    if self.num_classes is None:
      if labels is not None:
        raise RunError('This flow is unconditional: it takes no labels.')
      return ()
    if labels is None:
      raise RunError(f'This flow is class-conditional ({self.num_classes} '
                     'classes): give labels.')
    labels = np.asarray(labels)
    if labels.dtype.kind not in 'iu' or labels.ndim > 1 or (
        labels.ndim == 1 and len(labels) != count):
      raise RunError(f'Labels must be one int per image ({count}) or one for '
                     f'all, got {labels.tolist()!r}.')
    if np.any((labels < 0) | (labels >= self.num_classes)):
      raise RunError(f'Labels must be in 0..{self.num_classes - 1}, got '
                     f'{labels.tolist()!r}.')
    return (tf.constant(np.broadcast_to(labels, [count]), tf.int32),)

  def check_labels(self, labels, count):
    """Raises a `RunError` unless `labels` suit `count` images of this
    flow (as its methods take them), before any work that needs them."""
    self._labels(labels, count)

  def bits_per_dim(self, x, labels=None):
    """`[B]` bits per dimension of dequantized images `x`."""
    return self._served.bits_per_dim(
        x, *self._labels(labels, len(x)))['bits_per_dim']

  def encode(self, x, labels=None):
    return self._served.encode(x, *self._labels(labels, len(x)))['latents']

  def decode(self, z, labels=None):
    return self._served.decode(z, *self._labels(labels, len(z)))['images']

  def sample(self, n, temperature, seed, labels=None):
    """`n` float images at `temperature`; `seed` is a pair of ints."""
    return self._served.sample(
        tf.constant(n, tf.int32), tf.constant(temperature, tf.float32),
        tf.constant(seed, tf.int32), *self._labels(labels, n))['images']

  def classify(self, x):
    """The `export` `classify` outputs of images `x` (a conditional flow)."""
    if self.num_classes is None:
      raise RunError('This flow is unconditional: it has no classes.')
    return self._served.classify(x)

  def interpolate(self, endpoints, steps, seed, labels=None):
    """Float images decoded at `steps + 2` evenly spaced points of the line
    between the latents of two `uint8` images `endpoints` (dequantized with
    `seed`), both ends included; of a conditional flow, encoded with their
    `labels` and decoded with the first's."""
    x = data.dequantize(endpoints, self.n_bits, seed=tf.constant([seed, 0]))
    z = self.encode(x, labels)
    alphas = tf.linspace(0., 1., steps + 2)[:, None]
    first = None if labels is None else np.asarray(labels).reshape(-1)[0]
    return self.decode((1. - alphas) * z[0] + alphas * z[1], first)


def load_split(trained, dataset, split, data_dir=None, download=True,
               labels=False):
  """`uint8` images of a split of `dataset` (with `labels`, `(image, label)`
  pairs) at the size of a `TrainedFlow`, checked to fit it (channels, and
  with `labels` the number of classes): a `RunError` if not."""
  images = data.load_images(dataset, split, trained.image_shape[0], data_dir,
                            download, labels=labels)
  if labels:
    classes = len(data.class_names(dataset, data_dir))
    if classes != trained.num_classes:
      raise RunError(f'The model has {trained.num_classes} classes; dataset '
                     f'{dataset!r} has {classes}.')
  _check_fits(trained, images, f'dataset {dataset!r}')
  return images


def _check_fits(trained, images, source):
  """Raises a `RunError` unless the images of dataset `images` (or of its
  `(image, label)` pairs) have the shape a `TrainedFlow` takes."""
  spec = (images.element_spec[0] if isinstance(images.element_spec, tuple)
          else images.element_spec)
  shape = tuple(spec.shape)
  if not spec.shape.is_compatible_with(trained.image_shape):
    found = (f'{shape[-1]} channel(s)' if tf.TensorShape(
        shape[:2]).is_compatible_with(trained.image_shape[:2]) else
             f'images of shape {shape}')
    raise RunError(
        f'The model takes images of shape {tuple(trained.image_shape)} '
        f'({trained.image_shape[-1]} channel(s)); {source} has {found}.')


def evaluate(trained, images, batch_size=256, seed=0):
  """Mean bits/dim over every image of a `uint8` dataset and, of a
  class-conditional `TrainedFlow` on `(image, label)` pairs, the accuracy
  of its classification.

  Each image is dequantized with a fixed seed (`data.pipeline`), so the
  numbers are reproducible; the means are over images (a last partial batch
  counts by its size). A conditional flow makes one pass per batch: the
  bits/dim are those of the true labels' `log p(x | y)`.

  Returns:
    dict: 'bits_per_dim', and 'accuracy' for a conditional flow.
  """
  _check_fits(trained, images, 'the dataset')
  batches = data.pipeline(images, batch_size, trained.n_bits, shuffle=False,
                          seed=seed, drop_remainder=False)
  bits, correct = [], []
  num_dims = int(np.prod(trained.image_shape))
  for batch in batches:
    if trained.num_classes is None:
      bits.append(np.asarray(trained.bits_per_dim(batch), np.float64))
      continue
    x, labels = batch
    labels = labels.numpy()
    outputs = trained.classify(x)
    log_likelihood = np.asarray(outputs['log_likelihoods'], np.float64)[
        np.arange(len(labels)), labels]
    bits.append(flow.bits_per_dim(log_likelihood, num_dims, trained.n_bits))
    correct.append(outputs['classes'].numpy() == labels)
  if not bits:
    raise RunError('The evaluation split holds no image.')
  result = {'bits_per_dim': float(np.concatenate(bits).mean())}
  if correct:
    result['accuracy'] = float(np.concatenate(correct).mean())
  return result


def cycled_labels(trained, count):
  """Labels `0, 1, .., K-1, 0, 1, ..` for `count` samples of a
  class-conditional `TrainedFlow` (of `K` classes); None for an
  unconditional one."""
  if trained.num_classes is None:
    return None
  return np.arange(count) % trained.num_classes


def sample_grid(trained, temperatures, per_row, seed=0):
  """A `uint8` grid of samples of a `TrainedFlow`: one row per temperature
  (of a class-conditional flow, sample `j` of a row is of class `j % K`).

  Args:
    trained: a `TrainedFlow`.
    temperatures: the rows' temperatures.
    per_row: samples per row.
    seed: int; row `i` uses the stateless seed `[seed, i]`.
  """
  labels = cycled_labels(trained, per_row)
  rows = [data.quantize(trained.sample(per_row, t, [seed, i], labels),
                        trained.n_bits)
          for i, t in enumerate(temperatures)]
  return data.image_grid(np.concatenate(rows), rows=len(temperatures))


def class_grid(trained, per_class, temperature, seed=0):
  """A `uint8` grid of samples of a class-conditional `TrainedFlow`: row `k`
  holds `per_class` samples of class `k`, at `temperature`, all drawn with
  the stateless seed `[seed, 0]`."""
  if trained.num_classes is None:
    raise RunError('This flow is unconditional: it has no classes.')
  labels = np.repeat(np.arange(trained.num_classes), per_class)
  images = trained.sample(len(labels), temperature, [seed, 0], labels)
  return data.image_grid(data.quantize(images, trained.n_bits).numpy(),
                         rows=trained.num_classes)
