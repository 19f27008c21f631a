"""Emerging convolution (Hoogeboom et al., 2019), the 3x3 baseline of CInC."""

import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp.bijectors import _base
from cinc_tfp.bijectors import _util
from cinc_tfp.bijectors import cinc_conv

__all__ = ['EmergingConv2D']


class EmergingConv2D(_base.PixelwiseVolumeBijector):
  """Two chained masked 2x2 convolutions with a 3x3 receptive field.

  ```none
  h = conv_TL(x, A)         # reads pixels (i-1..i, j-1..j): the top-left mask
  y = conv_BR(h, B) + bias  # reads pixels (i..i+1, j..j+1): the flipped mask
  ```

  Each factor is a `CIncConv2D` with `k = 2`, padded on opposite corners:
  `A`'s diagonal tap is `U_A + diag(exp(s))` with `s = 8 tanh(log_diag / 8)`,
  `B`'s is `U_B + I` (the scale is learned once). Together they see the full
  3x3 neighbourhood and

  ```none
  log|det J| = H * W * sum_c s[c].
  ```

  With `reverse_channels`, the output's channels come in reverse order,
  folded into the second factor (see `CIncConv2D`).

  The inverse undoes the two factors in turn, each by `CIncConv2D`'s solver,
  so it costs two sequential solves where CInC needs one. Its two `2 x 2`
  kernels hold `8 C^2` weights (about `7 C^2` free once the diagonal taps are
  masked) against `9 C^2` (about `8.5 C^2`) for CInC's `3 x 3` kernel.
  Parameters only (`init.emerging_conv` gives the starting ones).
  """

  def __init__(self,
               kernel_a,
               kernel_b,
               log_diag=None,
               bias=None,
               *,
               reverse_channels=False,
               inverse_plan=None,
               check_plan=True,
               validate_args=False,
               name='emerging_conv2d'):
    """Builds the bijector.

    Args:
      kernel_a: `[2, 2, C, C]` weights of the top-left masked factor.
      kernel_b: `[2, 2, C, C]` weights of the bottom-right masked factor.
      log_diag: `[C]` free parameter of the diagonal of `kernel_a`'s
        diagonal tap (its log, softly bounded to [-8, 8]); `None` means a
        unit diagonal.
      bias: `[C]` bias, or `None`.
      reverse_channels: reverse the channels of the output.
      inverse_plan: optional pair of `triangular_conv.InversePlan`s from
        `plan_inverse` (the first factor's, the second's), or a function of
        no arguments that returns one (called when an inverse is built).
      check_plan: as for `CIncConv2D`, for both factors.
      validate_args: check inputs for NaN and infinite values.
      name: name scope.
    """
    parameters = dict(locals())
    with tf.name_scope(name) as scope_name:
      plan = lambda index: (  # pylint: disable=g-long-lambda
          None if inverse_plan is None
          else lambda: _util.called(inverse_plan)[index])
      self._first = cinc_conv.CIncConv2D(
          kernel_a, log_diag, corner='top_left', inverse_plan=plan(0),
          check_plan=check_plan, validate_args=validate_args, name='first')
      self._second = cinc_conv.CIncConv2D(
          kernel_b, None, bias, corner='bottom_right',
          reverse_channels=reverse_channels, inverse_plan=plan(1),
          check_plan=check_plan, validate_args=validate_args, name='second')
      for kernel in (self._first.kernel, self._second.kernel):
        if kernel.shape[:2] != [2, 2]:
          raise ValueError(
              'EmergingConv2D: kernels must have shape [2, 2, C, C], got '
              f'{kernel.shape}.')
      self._channels = self._first.channels
      if self._second.channels != self._channels:
        raise ValueError(
            'EmergingConv2D: kernel_a and kernel_b must have the same number '
            f'of channels, got shapes {self._first.kernel.shape} and '
            f'{self._second.kernel.shape}.')
      # The weights actually used (see CIncConv2D).
      parameters.update(kernel_a=self._first.kernel,
                        kernel_b=self._second.kernel,
                        log_diag=self._first.log_diag, bias=self._second.bias)
      super().__init__(
          forward_min_event_ndims=3,
          is_constant_jacobian=True,
          validate_args=validate_args,
          parameters=parameters,
          dtype=self._first.dtype,
          name=scope_name)

  @classmethod
  def _parameter_properties(cls, dtype):
    properties = tfp.util.ParameterProperties
    return dict(
        kernel_a=properties(event_ndims=4),
        kernel_b=properties(event_ndims=4),
        log_diag=properties(event_ndims=1),
        bias=properties(event_ndims=1))

  @property
  def factors(self):
    """The two `CIncConv2D`s, in forward order."""
    return self._first, self._second

  @property
  def kernel_a(self):
    return self._first.kernel

  @property
  def kernel_b(self):
    return self._second.kernel

  @property
  def log_diag(self):
    return self._first.log_diag

  @property
  def bias(self):
    return self._second.bias

  @property
  def reverse_channels(self):
    return self._second.reverse_channels

  def _pixel_log_det(self):
    return self._first._pixel_log_det()  # pylint: disable=protected-access

  def plan_parameters(self):
    """The tensors its pair of plans is keyed on: the first factor's, then
    the second's (see `CIncConv2D.plan_parameters`)."""
    return self._first.plan_parameters() + self._second.plan_parameters()

  def plan_inverse(self, width, height=None):
    """The pair of `InversePlan`s of the current weights (first factor,
    second), for images `width` pixels wide (and `height` high)."""
    return (self._first.plan_inverse(width, height),
            self._second.plan_inverse(width, height))

  def _forward(self, x):
    return self._second.forward(self._first.forward(x))

  def _inverse(self, y):
    return self._first.inverse(self._second.inverse(y))

  def inverse_reference(self, y):
    """The inverse by the plain pixel-by-pixel solver (slow; for tests and
    for timing the sequential inverse the Emerging paper used)."""
    return self._first.inverse_reference(self._second.inverse_reference(y))
