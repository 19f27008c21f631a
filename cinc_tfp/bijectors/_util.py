"""Helpers shared by the image bijectors: input checks and parameters."""

import numbers

import tensorflow as tf


def positive_int(value, what, error=ValueError):
  """`value` as an int, or `error` saying that `what` must be a positive int
  (the one check of the package's counts and sizes)."""
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or
      value < 1):
    raise error(f'{what} must be a positive int, got {value!r}.')
  return int(value)


def image_shape(x, bijector_name):
  """Static `(H, W, C)` of an image batch `[..., H, W, C]`, or a clear error."""
  shape = tf.TensorShape(x.shape)
  if shape.rank is None or shape.rank < 3:
    raise ValueError(
        f'{bijector_name}: expected images of shape [..., H, W, C] (rank >= '
        f'3), got shape {shape}.')
  height, width, channels = shape[-3:]
  if None in (height, width, channels):
    raise ValueError(
        f'{bijector_name}: H, W and C must be known statically, got shape '
        f'{shape}.')
  return height, width, channels


def check_channels(x, channels, bijector_name):
  """`image_shape`, plus an error unless the images have `channels` channels."""
  height, width, found = image_shape(x, bijector_name)
  if found != channels:
    raise ValueError(
        f'{bijector_name}: built for {channels} channels, got images with '
        f'{found} channels (shape {x.shape}).')
  return height, width


def assert_finite(x, validate_args, bijector_name):
  """With `validate_args`, fails on NaN or infinite entries of `x`."""
  if not validate_args:
    return x
  return tf.debugging.assert_all_finite(
      x, f'{bijector_name}: input contains NaN or infinite values.')


def as_images(x):
  """`x` reshaped to `[B, H, W, C]`, and a function restoring its batch shape."""
  if x.shape.rank == 4:
    return x, lambda images: images
  batch_shape = tf.shape(x)[:-3]
  static_batch_shape = x.shape[:-3]

  def restore(images):
    restored = tf.reshape(
        images, tf.concat([batch_shape, tf.shape(images)[1:]], axis=0))
    return tf.ensure_shape(
        restored, static_batch_shape.concatenate(images.shape[1:]))

  return tf.reshape(x, [-1] + x.shape[-3:].as_list()), restore


def check_float_dtype(dtype, bijector_name):
  """Fails unless the weights' `dtype` is float32 or float64, the dtypes of
  TensorFlow's triangular solves and matrix inverses."""
  if dtype not in (tf.float32, tf.float64):
    raise ValueError(f'{bijector_name}: weights must be float32 or float64, '
                     f'got {dtype.name}.')


def check_vectors(vectors, channels, bijector_name):
  """Fails unless every non-`None` value of `vectors` has shape `[channels]`."""
  for name, value in vectors.items():
    if value is not None and value.shape != [channels]:
      raise ValueError(
          f'{bijector_name}: {name} must have shape [{channels}] (one entry '
          f'per channel), got {value.shape}.')


def variable_or_tensor(value, dtype, name):
  """Keeps variables as they are (so they train); converts anything else."""
  if value is None or isinstance(value, tf.Variable):
    return value
  return tf.convert_to_tensor(value, dtype=dtype, name=name)


# The diagonal of a triangular tap is exp(MAX_LOG_DIAGONAL * tanh(s / MAX)):
# exp(s) near s = 0, and never below e^-8 or above e^8, so that float32 can
# neither round it to zero nor make the substitution blow up.
MAX_LOG_DIAGONAL = 8.


def soft_bound(value, bound):
  """`value` near 0, squashed smoothly into `(-bound, bound)`."""
  return bound * tf.tanh(value / bound)


def bounded_log_diagonal(log_diag):
  """Log of a triangular tap's diagonal from its free parameter."""
  return soft_bound(log_diag, MAX_LOG_DIAGONAL)


def called(value):
  """`value()` if `value` is callable (a deferred argument), else `value`."""
  return value() if callable(value) else value
