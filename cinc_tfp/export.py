"""SavedModel export of a `CIncFlow` that serves with plain TensorFlow.

`save(model, path)` writes a SavedModel whose functions need neither
`cinc_tfp`, TFP nor Keras to load and run: `tf.saved_model.load(path)` in a
process that imports only TensorFlow. Each function is both a named signature
(`loaded.signatures['log_prob']`, for TF Serving) and a method of the loaded
object (`loaded.log_prob(images)`), and returns a dict:

- `log_prob(images)`: `{'log_prob': [B]}`, in nats, of float32 dequantized
  images `[B, H, W, C]` in `[-0.5, 0.5)`.
- `bits_per_dim(images)`: `{'bits_per_dim': [B]}`.
- `encode(images)`: `{'latents': [B, H*W*C]}`.
- `decode(latents)`: `{'images': [B, H, W, C], 'valid': [B]}`.
- `sample(n, temperature, seed)`: int32 scalar, float32 scalar and int32
  `[2]` stateless seed (the same seed gives the same images) to
  `{'images': [n, H, W, C], 'images_uint8': [n, H, W, C], 'valid': [n]}`,
  `images_uint8` quantized to uint8 on the 0..255 scale.

A class-conditional flow (`num_classes=K`) takes int32 `labels` `[B]` (for
`sample`, `[n]`) as the last input of each, in `0..K-1`, and has one more:

- `classify(images)`: `{'log_probs': [B, K]}` (`log p(y | x)`, uniform class
  prior), `{'log_likelihoods': [B, K]}` (`log p(x | y)`) and
  `{'classes': [B]}` (int32, the most probable).

`valid` is False for an image that is not finite everywhere (its inverse
overflowed: measured none in 10,000 samples of the default model at
temperature 1). Images given to `log_prob`, `bits_per_dim` and `encode` must
lie in `[-0.5, 0.5)` with no NaN, and `sample` takes `n >= 1` and a finite
temperature above 0: anything else fails with an `InvalidArgumentError`
that says so.

The loaded object also holds `config_json` (a string variable: json of
`model.get_config()`), `image_shape` (int32 `[3]`), `n_bits` (int32) and
`num_classes` (int32, 0 for an unconditional flow).
"""

import functools
import json
import os
import re
import shutil
import tempfile
import uuid

import tensorflow as tf

from cinc_tfp import data
from cinc_tfp import flow
from cinc_tfp import _errors
from cinc_tfp import _paths

__all__ = ['CONDITIONAL_SIGNATURES', 'ExportError', 'SIGNATURES', 'load',
           'save', 'serving_module']

SIGNATURES = ('log_prob', 'bits_per_dim', 'encode', 'decode', 'sample')
CONDITIONAL_SIGNATURES = SIGNATURES + ('classify',)
_SAVED_MODEL_FILES = ('saved_model.pb', 'saved_model.pbtxt')


class ExportError(ValueError):
  """A path that holds no loadable SavedModel, or that `save` won't replace."""


def serving_module(model):
  """The `tf.Module` that `save` writes, in memory: the same functions (and
  dict outputs) as a loaded SavedModel, running on `model`'s weights."""
  return _Serving(model)


class _Serving(tf.Module):
  """The served functions of a `CIncFlow`, with fixed input signatures.

  The functions call the model's methods, which build its bijector afresh
  inside each traced function: TFP's cache never holds a tensor of another
  graph. The module tracks the model's weights but not the model itself, so
  the SavedModel holds no optimizer or metric state. The CInC layers'
  inverse plans of the weights at export are constants of the served
  `decode` (see `CIncFlow._decode`): as variables, the served `sample` of
  one image took 1.17-1.22x the in-memory model's time, as constants
  1.03-1.09x, at twice the size of `saved_model.pb` (docs/performance.md).
  """

  def __init__(self, model):
    super().__init__(name='cinc_flow')
    self._weights = list(model.weights)
    self.config_json = tf.Variable(
        json.dumps(model.get_config(), sort_keys=True), trainable=False,
        name='config_json')
    self.image_shape = tf.Variable(
        model.image_shape, dtype=tf.int32, trainable=False, name='image_shape')
    self.n_bits = tf.Variable(
        model.n_bits, dtype=tf.int32, trainable=False, name='n_bits')
    self.num_classes = tf.Variable(
        model.num_classes or 0, dtype=tf.int32, trainable=False,
        name='num_classes')
    # Each function takes `*labels`: `(labels,)` of a class-conditional
    # flow, `()` of an unconditional one (see `label_specs`).

    def log_prob(images, *labels):
      return {'log_prob': _float32(model.log_prob(images, *labels))}

    def bits_per_dim(images, *labels):
      return {'bits_per_dim': _float32(model.bits_per_dim(images, *labels))}

    def encode(images, *labels):
      return {'latents': _float32(model.encode(images, *labels))}

    def decode(latents, *labels):
      images = _float32(model.decode(latents, *labels))
      return {'images': images, 'valid': flow.finite_images(images)}

    def sample(n, temperature, seed, *labels):
      # A call of the traced `decode`: one trace of the inverse for both.
      decoded = self.decode(
          _float32(model.sample_latents(n, temperature, seed)), *labels)
      return {'images': decoded['images'],
              'images_uint8': data.quantize(decoded['images'], model.n_bits),
              'valid': decoded['valid']}

    def classify(images):
      log_likelihoods = model.class_log_likelihoods(images)
      log_probs = tf.nn.log_softmax(log_likelihoods, axis=-1)
      return {'log_probs': _float32(log_probs),
              'log_likelihoods': _float32(log_likelihoods),
              'classes': tf.argmax(log_probs, axis=-1, output_type=tf.int32)}

    # Autograph off: the model's loops run over static shapes, and tracing
    # is twice as fast without it.
    function = functools.partial(tf.function, autograph=False)
    images = tf.TensorSpec([None, *model.image_shape], tf.float32, 'images')
    label_specs = ([] if model.num_classes is None else
                   [tf.TensorSpec([None], tf.int32, 'labels')])
    self.log_prob = function(log_prob, input_signature=[images] + label_specs)
    self.bits_per_dim = function(bits_per_dim,
                                 input_signature=[images] + label_specs)
    self.encode = function(encode, input_signature=[images] + label_specs)
    self.decode = function(decode, input_signature=[
        tf.TensorSpec([None, model.num_dims], tf.float32, 'latents')
    ] + label_specs)
    self.sample = function(sample, input_signature=[
        tf.TensorSpec([], tf.int32, 'n'),
        tf.TensorSpec([], tf.float32, 'temperature'),
        tf.TensorSpec([2], tf.int32, 'seed'),
    ] + label_specs)
    self.signature_names = SIGNATURES
    if model.num_classes is not None:
      self.classify = function(classify, input_signature=[images])
      self.signature_names = CONDITIONAL_SIGNATURES


def _float32(x):
  return tf.cast(x, tf.float32)


def _is_saved_model(path):
  return any(tf.io.gfile.exists(os.path.join(path, name))
             for name in _SAVED_MODEL_FILES)


def save(model, path):
  """Writes a SavedModel of a CIncFlow that serves with plain TensorFlow.

  The SavedModel is written under a temporary sibling directory and moved to
  `path` only once complete, so a failed save leaves `path` as it was. An
  existing SavedModel (or empty directory) at `path` is replaced. On a local
  filesystem the move is a rename; on others (`gs://`, `ram://`), which have
  no directory rename, the finished SavedModel is copied over. A local save
  killed midway leaves its hidden staging folder (`.NAME.saving-PID-*`); the
  next save to the same path removes it.

  Args:
    model: a `cinc_tfp.CIncFlow`.
    path: a directory: local (relative, `~` or absolute) or any
      `tf.io.gfile` path.

  Raises:
    ExportError: `path` exists and is neither a SavedModel nor an empty
      directory, its parent directory cannot be made (a file is in the
      way), or the model was never initialized (neither trained nor
      restored).
  """
  if not isinstance(model, flow.CIncFlow):
    raise TypeError(
        f'export.save expects a cinc_tfp.CIncFlow, got {type(model).__name__}.')
  if not model.is_initialized:
    raise ExportError(
        'Refusing to export a CIncFlow that was never initialized: train it, '
        'restore its weights or call model.initialize(images) first.')
  path = _paths.resolve(path)
  remote = _paths.is_remote(path)
  gfile = tf.io.gfile
  if (gfile.exists(path) or os.path.lexists(path)) and not (
      gfile.isdir(path) and (_is_saved_model(path) or not gfile.listdir(path))):
    raise ExportError(
        f'Refusing to replace {path!r}: it exists and is neither a SavedModel '
        f'nor an empty directory.')
  parent, name = os.path.split(path)
  try:
    gfile.makedirs(parent)
  except tf.errors.OpError as error:
    reason = _errors.first_line(error)
    raise ExportError(f'Cannot export to {path!r}: its directory {parent!r} '
                      f'cannot be made ({reason}).') from None
  module = _Serving(model)
  if remote:
    staging = os.path.join(parent, f'.saving-{uuid.uuid4().hex}-{name}')
    saved = staging
  else:
    _remove_stale(path)
    # A private staging directory, named by this process so that a later
    # save can tell it was left by a killed one; the SavedModel inside it
    # gets the usual permissions.
    staging = tempfile.mkdtemp(prefix=f'.{name}.saving-{os.getpid()}-',
                               dir=parent)
    saved = os.path.join(staging, name)
  try:
    tf.saved_model.save(
        module, saved,
        signatures={key: getattr(module, key)
                    for key in module.signature_names})
    if remote:
      _copy_over(saved, path)
    else:
      _replace(saved, path)
  finally:
    if remote:
      _remove_tree(staging)
    else:
      shutil.rmtree(staging, ignore_errors=True)


def _copy_over(source, path):
  """Copies directory `source` to `path`, replacing what `path` holds (for
  filesystems without a directory rename)."""
  _remove_tree(path)
  for directory, _, files in tf.io.gfile.walk(source):
    target = path + directory[len(source):]
    tf.io.gfile.makedirs(target)
    for file in files:
      tf.io.gfile.copy(os.path.join(directory, file),
                       os.path.join(target, file))


def _remove_stale(path):
  """Removes the staging folders that saves to local `path` killed midway
  (by processes no longer running) left beside it. A previous SavedModel
  set aside by such a save goes back to `path` if `path` is missing."""
  parent, name = os.path.split(path)
  pattern = re.compile(rf'\.{re.escape(name)}\.(saving|old)-(\d+)-.+')
  for entry in os.listdir(parent):
    match = pattern.fullmatch(entry)
    if not match or _is_running(int(match.group(2))):
      continue
    stale = os.path.join(parent, entry)
    old = os.path.join(stale, 'old')
    if match.group(1) == 'old' and os.path.isdir(old) and not os.path.lexists(
        path):
      os.replace(old, path)
    shutil.rmtree(stale, ignore_errors=True)


def _is_running(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Another user's process.
  return True


def _remove_tree(path):
  """Deletes remote `path` and all under it, if it exists (file by file:
  `ram://` has no recursive delete)."""
  if not tf.io.gfile.exists(path):
    return
  for directory, _, files in tf.io.gfile.walk(path, topdown=False):
    for file in files:
      tf.io.gfile.remove(os.path.join(directory, file))
    try:
      tf.io.gfile.remove(directory)
    except tf.errors.OpError:
      pass  # An implicit directory (ram://, gs://) goes with its files.


def _replace(source, path):
  """Moves directory `source` to `path`, replacing what `path` holds.

  Two renames: between them `path` is briefly absent (a reader sees the old
  SavedModel, the new one or none, never a mix); if the second fails, the
  old one is put back.
  """
  if not os.path.lexists(path):
    os.replace(source, path)
    return
  aside = tempfile.mkdtemp(
      prefix=f'.{os.path.basename(path)}.old-{os.getpid()}-',
      dir=os.path.dirname(path))
  old = os.path.join(aside, 'old')
  os.replace(path, old)
  try:
    os.replace(source, path)
  except BaseException:
    os.replace(old, path)
    os.rmdir(aside)
    raise
  shutil.rmtree(aside, ignore_errors=True)


def load(path):
  """`tf.saved_model.load(path)`, with an `ExportError` if it can't load.

  Keep the returned object alive while calling its functions: they hold only
  weak references to its variables.

  Raises:
    ExportError: (one line, naming `path`) `path` is missing or holds no
      loadable SavedModel, or one without this module's signatures.
  """
  try:
    loaded = tf.saved_model.load(os.fspath(path))
  except (OSError, ValueError, tf.errors.OpError) as error:
    raise ExportError(f'Cannot load a SavedModel from {path!r}: '
                      f'{_errors.first_line(error)}') from error
  conditional = int(getattr(loaded, 'num_classes', 0)) > 0
  missing = [name for name in
             (CONDITIONAL_SIGNATURES if conditional else SIGNATURES)
             if name not in loaded.signatures]
  if missing:
    raise ExportError(
        f'The SavedModel at {path!r} is not a CIncFlow export: it lacks the '
        f'signatures {missing}.')
  return loaded
