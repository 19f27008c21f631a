"""Initial parameters of the bijectors, the only place they are defined.

The bijectors take parameters only (tensors or variables, as TFP's do); each
function here returns the starting parameters of one parametrization as a
dict of tensors, to pass as keyword arguments:

```python
conv = bijectors.CIncConv2D(**init.cinc_conv(channels=3, seed=0))
trainable = bijectors.CIncConv2D(**init.variables(init.cinc_conv(3, seed=0)))
```

Seeds are an int, a `[2]` stateless seed, or `None` (fresh). A function
that draws several weights splits its seed (`tfp.random.split_seed`), and a
model draws the seed of each layer, and each network weight, from one
`SeedStream`, so no two weights of a model share a seed.
"""

import numbers

import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp.bijectors import _util

__all__ = ['FIXED', 'SeedStream', 'actnorm', 'actnorm_from_data', 'cinc_conv',
           'conv1x1', 'emerging_conv', 'stateless_seed', 'variables']

# Parameters that stay as initialized: never trained, and saved with a model
# only so that it restores exactly.
FIXED = ('sign', 'permutation')

# Standard deviation of the free entries of a corner convolution's kernel.
KERNEL_STDDEV = 0.05

_ACTNORM_EPSILON = 1e-6


class SeedStream:
  """Int seeds in `[0, 2**31)` (the range every Keras initializer takes), all
  different: a `tfp.util.SeedStream` of `seed` and `salt`, cut to that range.
  """

  def __init__(self, seed, salt):
    self._stream = tfp.util.SeedStream(seed, salt)

  def __call__(self):
    return self._stream() % 2**31


def stateless_seed(seed, salt=None):
  """A `[2]` int32 stateless seed, the same for the same `seed`.

  `seed` is an int in `[0, 2**62)` (Python, NumPy or a scalar tensor), a `[2]`
  int seed, or `None` for a fresh one; a `salt` (a string) folds in, so that
  one seed gives independent draws under different salts. (TFP's
  `sanitize_seed` would turn an int into a draw of the stateful generator.)
  """
  if seed is None:
    seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
  elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
    if not 0 <= seed < 2**62:
      raise ValueError(f'seed must be in [0, 2**62), got {seed}.')
    # Two 31-bit halves, so that large seeds do not wrap onto small ones.
    seed = tf.constant([int(seed) % 2**31, int(seed) // 2**31], tf.int32)
  else:
    seed = _seed_tensor(seed)
    if seed.shape.rank == 0:
      seed = tf.cast(seed, tf.int64)
      seed = tf.stack([seed % 2**31, seed // 2**31])
    seed = tf.cast(seed, tf.int32)
  return seed if salt is None else tfp.random.sanitize_seed(seed, salt=salt)


def _seed_tensor(seed):
  """`seed` as an integer tensor of shape `[]` or `[2]`; a `ValueError` for
  anything else, and for a scalar known to lie outside `[0, 2**62)`."""
  message = ('seed must be an int in [0, 2**62), a [2] int seed or None, '
             f'got {seed!r}.')
  try:
    tensor = tf.convert_to_tensor(seed)
  except (TypeError, ValueError) as error:
    raise ValueError(message) from error
  if not tensor.dtype.is_integer or tensor.shape.rank not in (None, 0, 1) or (
      tensor.shape.rank == 1 and tensor.shape[0] not in (None, 2)):
    raise ValueError(message)
  value = tf.get_static_value(tensor)
  if tensor.shape.rank == 0 and value is not None and not 0 <= value < 2**62:
    raise ValueError(message)
  return tensor


def _normal(shape, seed, dtype, salt):
  return tf.random.stateless_normal(
      shape, stateless_seed(seed, salt), stddev=KERNEL_STDDEV, dtype=dtype)


def cinc_conv(channels, kernel_size=3, seed=None, dtype=tf.float32,
              volume_preserving=False, use_bias=True):
  """`kernel`, `log_diag` and `bias` of a `CIncConv2D` near the identity.

  The kernel is normal with stddev `KERNEL_STDDEV`; `log_diag` and `bias`
  start at zero (left out when `volume_preserving` or not `use_bias`).
  """
  channels = _util.positive_int(channels, 'init.cinc_conv: channels')
  kernel_size = _util.positive_int(kernel_size, 'init.cinc_conv: kernel_size')
  parameters = dict(kernel=_normal(
      [kernel_size, kernel_size, channels, channels], seed, dtype, 'cinc'))
  if not volume_preserving:
    parameters['log_diag'] = tf.zeros([channels], dtype)
  if use_bias:
    parameters['bias'] = tf.zeros([channels], dtype)
  return parameters


def emerging_conv(channels, seed=None, dtype=tf.float32, use_bias=True):
  """`kernel_a`, `kernel_b`, `log_diag` and `bias` of an `EmergingConv2D`:
  its two `2 x 2` kernels as `cinc_conv`'s, from two halves of `seed`."""
  channels = _util.positive_int(channels, 'init.emerging_conv: channels')
  seed_a, seed_b = tfp.random.split_seed(stateless_seed(seed, 'emerging'))
  shape = [2, 2, channels, channels]
  parameters = dict(kernel_a=_normal(shape, seed_a, dtype, 'a'),
                    kernel_b=_normal(shape, seed_b, dtype, 'b'),
                    log_diag=tf.zeros([channels], dtype))
  if use_bias:
    parameters['bias'] = tf.zeros([channels], dtype)
  return parameters


def conv1x1(channels, seed=None, dtype=tf.float32):
  """`lower_upper`, `log_scale`, `sign` and `permutation` of a `Conv1x1`:
  the LU factors of a random rotation (Glow's start), computed in float64."""
  channels = _util.positive_int(channels, 'init.conv1x1: channels')
  rotation, _ = tf.linalg.qr(tf.random.stateless_normal(
      [channels, channels], stateless_seed(seed, 'conv1x1'),
      dtype=tf.float64))
  lower_upper, permutation = tf.linalg.lu(rotation)
  diagonal = tf.linalg.diag_part(lower_upper)
  return dict(lower_upper=tf.cast(lower_upper, dtype),
              log_scale=tf.cast(tf.math.log(tf.abs(diagonal)), dtype),
              sign=tf.cast(tf.sign(diagonal), dtype),
              permutation=permutation)


def actnorm(channels, dtype=tf.float32):
  """`log_scale` and `bias` of an identity `ActNorm` (zeros)."""
  channels = _util.positive_int(channels, 'init.actnorm: channels')
  return dict(log_scale=tf.zeros([channels], dtype),
              bias=tf.zeros([channels], dtype))


def actnorm_from_data(x):
  """`log_scale` and `bias` that make `ActNorm` map the batch `x`
  (`[..., C]`) to zero mean and unit variance per channel (Glow)."""
  x = tf.convert_to_tensor(x)
  mean, variance = tf.nn.moments(x, axes=list(range(x.shape.rank - 1)))
  return dict(log_scale=-0.5 * tf.math.log(variance + _ACTNORM_EPSILON),
              bias=-mean)


def variables(parameters):
  """`parameters` with each trainable one made a `tf.Variable` (the `FIXED`
  ones stay tensors), for a standalone bijector to train."""
  return {name: value if name in FIXED else tf.Variable(value, name=name)
          for name, value in parameters.items()}
