"""Activation normalization (Glow) with data-dependent initialization."""

import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp.bijectors import _base
from cinc_tfp.bijectors import _util
from cinc_tfp.bijectors import init

__all__ = ['ActNorm']


class ActNorm(_base.PixelwiseVolumeBijector):
  """Per-channel affine map `y = (x + bias) * exp(log_scale)`.

  ```none
  log|det J| = H * W * sum_c log_scale[c].
  ```

  `log_scale` and `bias` may have batch dimensions (`[..., C]`, TFP's batch
  shape of the bijector): each batch member has its own map, and images
  `[..., H, W, C]` broadcast against them (a class-conditional prior).

  Parameters only: `init.actnorm` gives the identity, and
  `init.actnorm_from_data(x)` the parameters that map the batch `x` to zero
  mean and unit variance per channel (Kingma & Dhariwal, 2018). Given
  `log_scale` and `bias` variables and a boolean `initialized` variable, the
  bijector sets them that way itself from the first batch it transforms
  while `initialized` is `False`.
  """

  def __init__(self,
               log_scale,
               bias,
               initialized=None,
               *,
               validate_args=False,
               name='actnorm'):
    """Builds the bijector.

    Args:
      log_scale: `[..., C]` log scale.
      bias: `[..., C]` bias added before scaling, of the same shape.
      initialized: optional boolean variable, with `log_scale` and `bias`
        variables: while it is `False`, the next forward pass initializes
        them from its batch and sets it.
      validate_args: check inputs for NaN and infinite values.
      name: name scope.
    """
    parameters = dict(locals())
    with tf.name_scope(name) as scope_name:
      self._initialized = initialized
      dtype = getattr(log_scale, 'dtype', None)
      self._log_scale = _util.variable_or_tensor(log_scale, dtype, 'log_scale')
      dtype = self._log_scale.dtype
      self._bias = _util.variable_or_tensor(bias, dtype, 'bias')
      if (self._log_scale.shape.rank in (None, 0) or
          self._bias.shape != self._log_scale.shape):
        raise ValueError(
            'ActNorm: log_scale and bias must both have shape [..., C], got '
            f'{self._log_scale.shape} and {self._bias.shape}.')
      if initialized is not None and self._log_scale.shape.rank != 1:
        raise ValueError(
            'ActNorm: data-dependent initialization needs log_scale and bias '
            f'of shape [C], got {self._log_scale.shape}.')
      if initialized is not None and not all(
          isinstance(p, tf.Variable) for p in (self._log_scale, self._bias)):
        raise ValueError(
            'ActNorm: data-dependent initialization (initialized=...) sets '
            'log_scale and bias, so both must be tf.Variables.')
      self._channels = self._log_scale.shape[-1]
      # The weights actually used (see CIncConv2D); a copy shares them.
      parameters.update(log_scale=self._log_scale, bias=self._bias,
                        initialized=self._initialized)
      super().__init__(
          forward_min_event_ndims=3,
          is_constant_jacobian=True,
          validate_args=validate_args,
          parameters=parameters,
          dtype=dtype,
          name=scope_name)

  @classmethod
  def _parameter_properties(cls, dtype):
    properties = tfp.util.ParameterProperties
    return dict(log_scale=properties(event_ndims=1),
                bias=properties(event_ndims=1))

  @property
  def log_scale(self):
    return self._log_scale

  @property
  def bias(self):
    return self._bias

  def initialize(self, x):
    """Sets the variables from the batch `x`, once; a no-op afterwards."""
    if self._initialized is None:
      return

    def assign():
      values = init.actnorm_from_data(tf.convert_to_tensor(x, self.dtype))
      with tf.control_dependencies(
          [self._log_scale.assign(values['log_scale']),
           self._bias.assign(values['bias'])]):
        return self._initialized.assign(True)

    tf.cond(self._initialized, lambda: tf.identity(self._initialized), assign)

  @property
  def initialized(self):
    return self._initialized

  def _pixel_log_det(self):
    return tf.reduce_sum(self._log_scale, axis=-1)

  def _per_pixel(self):
    """`(log_scale, bias)` shaped `[..., 1, 1, C]`, to broadcast over images."""
    return (self._log_scale[..., tf.newaxis, tf.newaxis, :],
            self._bias[..., tf.newaxis, tf.newaxis, :])

  def _forward(self, x):
    x = _util.assert_finite(x, self.validate_args, self.name)
    _util.check_channels(x, self._channels, self.name)
    self.initialize(x)
    log_scale, bias = self._per_pixel()
    return (x + bias) * tf.exp(log_scale)

  def _inverse(self, y):
    y = _util.assert_finite(y, self.validate_args, self.name)
    _util.check_channels(y, self._channels, self.name)
    log_scale, bias = self._per_pixel()
    return y * tf.exp(-log_scale) - bias

  def _forward_log_det_jacobian(self, x):
    self.initialize(x)
    return super()._forward_log_det_jacobian(x)
