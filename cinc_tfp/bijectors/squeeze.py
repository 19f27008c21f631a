"""Squeeze: 2x2 space-to-depth."""

import tensorflow as tf

from cinc_tfp.bijectors import _base
from cinc_tfp.bijectors import _util

__all__ = ['Squeeze']


class Squeeze(_base.Bijector):
  """Reshapes `[..., H, W, C]` to `[..., H/2, W/2, 4C]` (`tf.nn.space_to_depth`).

  Each 2x2 block of pixels becomes one pixel with its four pixels' channels
  stacked. A permutation of the entries: exactly invertible, `log|det J| = 0`.
  """

  def __init__(self, validate_args=False, name='squeeze'):
    parameters = dict(locals())
    with tf.name_scope(name) as scope_name:
      super().__init__(
          forward_min_event_ndims=3,
          inverse_min_event_ndims=3,
          is_constant_jacobian=True,
          validate_args=validate_args,
          parameters=parameters,
          name=scope_name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict()

  def _event_dims(self, shape):
    """`(H, W, C)` of a static shape `[..., H, W, C]` of known rank (entries
    may be None)."""
    if shape.rank is not None and shape.rank < 3:
      raise ValueError(
          f'{self.name}: expected images of shape [..., H, W, C] (rank >= 3), '
          f'got shape {shape}.')
    return shape[-3:]

  def _forward_event_shape(self, input_shape):
    if input_shape.rank is None:
      return input_shape
    height, width, channels = self._event_dims(input_shape)
    self._check_even(height, width, input_shape)
    return input_shape[:-3].concatenate(
        [_half(height), _half(width), _times(channels, 4)])

  def _inverse_event_shape(self, output_shape):
    if output_shape.rank is None:
      return output_shape
    height, width, channels = self._event_dims(output_shape)
    if channels is not None and channels % 4:
      raise ValueError(
          f'{self.name}: inverse needs a channel count divisible by 4, got '
          f'shape {output_shape}.')
    return output_shape[:-3].concatenate(
        [_times(height, 2), _times(width, 2), _half(channels, 4)])

  def _forward_event_shape_tensor(self, input_shape):
    return tf.concat([input_shape[:-3], input_shape[-3:-1] // 2,
                      input_shape[-1:] * 4], axis=0)

  def _inverse_event_shape_tensor(self, output_shape):
    return tf.concat([output_shape[:-3], output_shape[-3:-1] * 2,
                      output_shape[-1:] // 4], axis=0)

  def _check_even(self, height, width, shape):
    if (height is not None and height % 2) or (width is not None and width % 2):
      raise ValueError(
          f'{self.name}: height and width must be even to squeeze, got shape '
          f'{shape}.')

  def _forward(self, x):
    height, width, _ = _util.image_shape(x, self.name)
    self._check_even(height, width, x.shape)
    x = _util.assert_finite(x, self.validate_args, self.name)
    images, restore = _util.as_images(x)
    return restore(tf.nn.space_to_depth(images, 2))

  def _inverse(self, y):
    _util.image_shape(y, self.name)
    self._inverse_event_shape(tf.TensorShape(y.shape))
    y = _util.assert_finite(y, self.validate_args, self.name)
    images, restore = _util.as_images(y)
    return restore(tf.nn.depth_to_space(images, 2))

  def _forward_log_det_jacobian(self, x):
    return tf.zeros([], x.dtype)

  def _inverse_log_det_jacobian(self, y):
    return tf.zeros([], y.dtype)


def _half(size, factor=2):
  return None if size is None else size // factor


def _times(size, factor):
  return None if size is None else size * factor
