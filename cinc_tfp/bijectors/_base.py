"""Base classes: this package's bijector, constant-log-det image bijectors,
and network-driven ones."""

import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp.bijectors import _util


class Bijector(tfp.bijectors.Bijector):
  """A TFP bijector that also maps and gives its log-det in one call.

  TFP computes `forward` and `forward_log_det_jacobian` separately, which
  re-runs a coupling layer's networks; like distrax, the bijectors of this
  package can do both at once, at their minimal event rank, in either
  direction (`fused` applies them through chains). The defaults here make
  TFP's two calls; subclasses that share the work override them.

  A tensor of another dtype than the bijector's is refused with a short
  error (TFP's own quotes the tensor's values).
  """

  def _checked(self, value):
    if (tf.is_tensor(value) and self.dtype is not None and
        value.dtype != self.dtype):
      raise ValueError(f'{self.name}: built for {self.dtype.name}, got a '
                       f'{value.dtype.name} tensor of shape {value.shape}.')
    return value

  def forward(self, x, name='forward', **kwargs):
    return super().forward(self._checked(x), name=name, **kwargs)

  def inverse(self, y, name='inverse', **kwargs):
    return super().inverse(self._checked(y), name=name, **kwargs)

  def forward_log_det_jacobian(self, x, event_ndims=None,
                               name='forward_log_det_jacobian', **kwargs):
    return super().forward_log_det_jacobian(
        self._checked(x), event_ndims=event_ndims, name=name, **kwargs)

  def inverse_log_det_jacobian(self, y, event_ndims=None,
                               name='inverse_log_det_jacobian', **kwargs):
    return super().inverse_log_det_jacobian(
        self._checked(y), event_ndims=event_ndims, name=name, **kwargs)

  def forward_and_log_det(self, x):
    """`(forward(x), forward_log_det_jacobian(x))`."""
    return self.forward(x), self.forward_log_det_jacobian(
        x, event_ndims=self.forward_min_event_ndims)

  def inverse_and_log_det(self, y):
    """`(inverse(y), inverse_log_det_jacobian(y))`."""
    return self.inverse(y), self.inverse_log_det_jacobian(
        y, event_ndims=self.inverse_min_event_ndims)


class PixelwiseVolumeBijector(Bijector):
  """Image bijector `[..., H, W, C] -> [..., H, W, C]` with a constant log-det.

  Subclasses have `self._channels` and implement `_pixel_log_det()`: the
  log-determinant per pixel, a scalar, or `None` when volume preserving. The
  Jacobian log-determinant of the whole image is then `H * W` times that.
  """

  @property
  def channels(self):
    return self._channels

  def _images(self, x):
    """Checks `x` and returns it as `[B, H, W, C]` with a restoring function."""
    _util.check_channels(x, self._channels, self.name)
    return _util.as_images(_util.assert_finite(x, self.validate_args, self.name))

  def _images_without(self, bias, y):
    """`_images(y)` with `bias` (`[C]` or `None`) taken off the images."""
    images, restore = self._images(y)
    return (images if bias is None else images - bias), restore

  def _pixel_log_det(self):
    raise NotImplementedError

  def _log_det(self, images):
    height, width = _util.check_channels(images, self._channels, self.name)
    pixel_log_det = self._pixel_log_det()
    if pixel_log_det is None:
      return tf.zeros([], self.dtype)
    return height * width * pixel_log_det

  def _forward_log_det_jacobian(self, x):
    return self._log_det(x)

  def _inverse_log_det_jacobian(self, y):
    return -self._log_det(y)


class NetworkBijector(Bijector):
  """Base of bijectors driven by networks (couplings, split priors).

  The networks' weights are not parameters TFP can see, so two instances
  that look equal may compute different things: they compare by identity,
  and TFP's forward/inverse cache never serves a result computed with other
  weights (build a new bijector after a weight update, as the Keras layers
  of this package do at every call).
  """

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict()

  def __hash__(self):
    return id(self)

  def __eq__(self, other):
    return self is other
