"""Generalized-Feistel affine coupling over channel blocks."""

import tensorflow as tf

from cinc_tfp.bijectors import _base
from cinc_tfp.bijectors import _util

SCALES = ('sigmoid', 'exp')
# The floor of the 'sigmoid' scale: its inverse divides by at most 1 / 1e-3.
# Without it, latents far out in the tails (temperature 1) drive `h` so low
# that `1 / sigmoid(h + 2)` grows exponentially through the steps and
# sampling overflows (measured: 16% of samples of the default model).
MIN_SCALE = 1e-3


class BlockCoupling(_base.NetworkBijector):
  """Splits channels into `n` equal blocks; block `i > 1` is transformed as

  ```none
  y_i = (x_i + t_{i-1}(x_1..x_{i-1})) * s_{i-1}(x_1..x_{i-1}),
  ```

  `y_1 = x_1`, with `[t, h] = network_{i-1}(concat(x_1..x_{i-1}))` and `s =
  m + (1 - m) sigmoid(h + 2)`, `m = MIN_SCALE` (Glow's and the CInC authors'
  sigmoid scale, kept from `0` so that the inverse cannot overflow), or
  `exp(h)`. The Jacobian is block
  triangular with diagonal `s`: `log|det J| = sum log s` over pixels and
  channels. The inverse recovers `x_2, x_3, ...` in order from the already
  recovered blocks.
  """

  def __init__(self, networks, num_blocks, scale, validate_args, parameters,
               name):
    if scale not in SCALES:
      raise ValueError(f'{name}: scale must be one of {SCALES}, got {scale!r}.')
    if len(networks) != num_blocks - 1:
      raise ValueError(
          f'{name}: needs {num_blocks - 1} networks, got {len(networks)}.')
    with tf.name_scope(name) as scope_name:
      self._networks = list(networks)
      self._num_blocks = num_blocks
      self._scale = scale
      super().__init__(
          forward_min_event_ndims=3,
          validate_args=validate_args,
          parameters=parameters,
          name=scope_name)

  @property
  def networks(self):
    return self._networks

  def _blocks(self, x):
    """`x` as `[B, H, W, C]` cut into channel blocks, and a restore function."""
    channels = _util.image_shape(x, self.name)[-1]
    if channels % self._num_blocks:
      raise ValueError(
          f'{self.name}: the channel count must be divisible by '
          f'{self._num_blocks} to split it into {self._num_blocks} blocks, got '
          f'{channels} channels (shape {x.shape}).')
    images, restore = _util.as_images(
        _util.assert_finite(x, self.validate_args, self.name))
    return tf.split(images, self._num_blocks, axis=-1), restore

  def _shift_and_log_scale(self, index, conditioning):
    """`(t, log s)` for block `index + 1` from the blocks before it."""
    h = self._networks[index](tf.concat(conditioning, axis=-1))
    block = conditioning[0].shape[-1]
    if h.shape[-1] != 2 * block:
      raise ValueError(
          f'{self.name}: network {index} must output 2 x {block} channels '
          f'(a shift and a scale per channel of its block), got {h.shape}.')
    shift, raw_scale = tf.split(h, 2, axis=-1)
    if self._scale == 'sigmoid':
      floor = tf.constant(MIN_SCALE, raw_scale.dtype)
      return shift, tf.math.log(floor +
                                (1. - floor) * tf.sigmoid(raw_scale + 2.))
    return shift, raw_scale

  def forward_and_log_det(self, x):
    """`(y, log|det J|)`, computing each network once."""
    blocks, restore = self._blocks(x)
    outputs = blocks[:1]
    log_det = 0.
    for i in range(1, self._num_blocks):
      shift, log_scale = self._shift_and_log_scale(i - 1, blocks[:i])
      outputs.append((blocks[i] + shift) * tf.exp(log_scale))
      log_det += tf.reduce_sum(log_scale, axis=[1, 2, 3])
    y = restore(tf.concat(outputs, axis=-1))
    return y, tf.reshape(log_det, tf.shape(y)[:-3])

  def _forward(self, x):
    return self.forward_and_log_det(x)[0]

  def _forward_log_det_jacobian(self, x):
    return self.forward_and_log_det(x)[1]

  def inverse_and_log_det(self, y):
    """`(x, log|det dx/dy|)`, computing each network once."""
    blocks, restore = self._blocks(y)
    inputs = blocks[:1]
    log_det = 0.
    for i in range(1, self._num_blocks):
      shift, log_scale = self._shift_and_log_scale(i - 1, inputs)
      inputs.append(blocks[i] * tf.exp(-log_scale) - shift)
      log_det -= tf.reduce_sum(log_scale, axis=[1, 2, 3])
    x = restore(tf.concat(inputs, axis=-1))
    return x, tf.reshape(log_det, tf.shape(x)[:-3])

  def replay_forward(self, y, tape):
    """The inverse of `y` and the forward from it under `tape`, each
    network run once for both (the contract of `recompute.replay`): the
    recovered blocks are constants that `tape` watches, so the recorded
    networks and outputs are the forward's at the rebuilt input."""
    blocks, restore = self._blocks(y)
    inputs = [tf.stop_gradient(blocks[0])]
    tape.watch(inputs[0])
    outputs = inputs[:1]
    log_det = 0.
    for i in range(1, self._num_blocks):
      shift, log_scale = self._shift_and_log_scale(i - 1, inputs)
      with tape.stop_recording():
        block = tf.stop_gradient(blocks[i] * tf.exp(-log_scale) - shift)
      tape.watch(block)
      inputs.append(block)
      outputs.append((block + shift) * tf.exp(log_scale))
      log_det += tf.reduce_sum(log_scale, axis=[1, 2, 3])
    assemble = lambda parts: restore(tf.concat(parts, axis=-1))  # pylint: disable=unnecessary-lambda-assignment
    y_again = assemble(outputs)
    return inputs, assemble, y_again, tf.reshape(log_det,
                                                 tf.shape(y_again)[:-3])

  def _inverse(self, y):
    return self.inverse_and_log_det(y)[0]

  def _inverse_log_det_jacobian(self, y):
    return self.inverse_and_log_det(y)[1]
