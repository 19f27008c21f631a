"""Emerging convolution (Hoogeboom et al., 2019), the 3x3 baseline of CInC."""

import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp.bijectors import _base
from cinc_tfp.bijectors import _util
from cinc_tfp.bijectors import triangular_conv


__all__ = ['EmergingConv2D']

_INIT_STDDEV = 0.05
_FIRST_CORNER = 'top_left'
_SECOND_CORNER = 'bottom_right'


class EmergingConv2D(_base.PixelwiseVolumeBijector):
  """Two chained masked 2x2 convolutions with a 3x3 receptive field.

  ```none
  h = conv_TL(x, A)        # reads pixels (i-1..i, j-1..j): the top-left mask
  y = conv_BR(h, B) + bias  # reads pixels (i..i+1, j..j+1): the flipped mask
  ```

  Each factor is a corner-padded convolution whose diagonal tap is triangular:
  `A`'s tap is `U_A + diag(exp(s))` with `s = 8 tanh(log_diag / 8)` (as in
  `CIncConv2D`), `B`'s is `U_B + I` (the scale is learned once). Together
  they see the full 3x3 neighbourhood and

  ```none
  log|det J| = H * W * sum_c s[c].
  ```

  The inverse undoes the two factors in turn, each by the same row-wise
  forward substitution as `CIncConv2D`, so it costs two sequential solves where
  CInC needs one; `plan_inverse(W)` makes the pair of `InversePlan`s that a
  bijector given them as `inverse_plan` uses, as `CIncConv2D` does. Its two `2 x 2` kernels hold `8 C^2` weights (about `7 C^2`
  free once the diagonal taps are masked) against `9 C^2` (about `8.5 C^2`)
  for CInC's `3 x 3` kernel.
  """

  def __init__(self,
               kernel_a=None,
               kernel_b=None,
               log_diag=None,
               bias=None,
               *,
               channels=None,
               use_bias=True,
               seed=None,
               dtype=tf.float32,
               inverse_plan=None,
               validate_args=False,
               name='emerging_conv2d'):
    """Builds the bijector.

    Args:
      kernel_a: `[2, 2, C, C]` weights of the top-left masked factor. If
        `None`, variables are created for `channels` channels.
      kernel_b: `[2, 2, C, C]` weights of the bottom-right masked factor.
      log_diag: `[C]` free parameter of the diagonal of `kernel_a`'s
        diagonal tap (its log, softly bounded to [-8, 8]); with
        kernels given, `None` means a unit diagonal.
      bias: `[C]` bias, or `None`.
      channels: number of channels, when creating variables.
      use_bias: when creating variables, whether to add a bias.
      seed: int or stateless seed for the initial weights.
      dtype: dtype of created variables.
      inverse_plan: optional pair of `triangular_conv.InversePlan`s from
        `plan_inverse` (the first factor's, the second's), or a function of
        no arguments that returns one (called when an inverse is built).
      validate_args: check inputs for NaN and infinite values.
      name: name scope.
    """
    parameters = dict(locals())
    with tf.name_scope(name) as scope_name:
      if kernel_a is None:
        if not isinstance(channels, int) or channels < 1:
          raise ValueError(
              'EmergingConv2D: channels must be a positive int, got '
              f'{channels!r}.')
        seed_a, seed_b = tfp.random.split_seed(
            _util.stateless_seed(seed, 'emerging'))
        shape = [2, 2, channels, channels]
        kernel_a = tf.Variable(
            tf.random.stateless_normal(
                shape, seed_a, stddev=_INIT_STDDEV, dtype=dtype),
            name='kernel_a')
        kernel_b = tf.Variable(
            tf.random.stateless_normal(
                shape, seed_b, stddev=_INIT_STDDEV, dtype=dtype),
            name='kernel_b')
        log_diag = tf.Variable(tf.zeros([channels], dtype), name='log_diag')
        if use_bias:
          bias = tf.Variable(tf.zeros([channels], dtype), name='bias')
      dtype = kernel_a.dtype
      self._kernel_a = _util.variable_or_tensor(kernel_a, dtype, 'kernel_a')
      self._kernel_b = _util.variable_or_tensor(kernel_b, dtype, 'kernel_b')
      self._log_diag = _util.variable_or_tensor(log_diag, dtype, 'log_diag')
      self._bias = _util.variable_or_tensor(bias, dtype, 'bias')
      self._inverse_plan = inverse_plan
      for kernel in (self._kernel_a, self._kernel_b):
        shape = kernel.shape
        if shape.rank != 4 or shape[:2] != [2, 2] or shape[2] != shape[3]:
          raise ValueError(
              'EmergingConv2D: kernels must have shape [2, 2, C, C], got '
              f'{shape}.')
      self._channels = self._kernel_a.shape[-1]
      if self._kernel_b.shape[-1] != self._channels:
        raise ValueError(
            'EmergingConv2D: kernel_a and kernel_b must have the same number '
            f'of channels, got shapes {self._kernel_a.shape} and '
            f'{self._kernel_b.shape}.')
      _util.check_vectors(dict(log_diag=self._log_diag, bias=self._bias),
                          self._channels, 'EmergingConv2D')
      # The weights actually used (see CIncConv2D).
      parameters.update(kernel_a=self._kernel_a, kernel_b=self._kernel_b,
                        log_diag=self._log_diag, bias=self._bias)
      super().__init__(
          forward_min_event_ndims=3,
          validate_args=validate_args,
          parameters=parameters,
          dtype=dtype,
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
  def kernel_a(self):
    return self._kernel_a

  @property
  def kernel_b(self):
    return self._kernel_b

  @property
  def log_diag(self):
    return self._log_diag

  @property
  def bias(self):
    return self._bias

  def _pixel_log_det(self):
    if self._log_diag is None:
      return None
    return tf.reduce_sum(_util.bounded_log_diagonal(self._log_diag))

  def effective_kernels(self):
    """The two `[2, 2, C, C]` kernels actually applied, in forward order."""
    first, second = self._weights()
    return self._first_kernel(*first), self._second_kernel(*second)

  def _weights(self):
    """The tensors that determine each factor's kernel."""
    first = [self._kernel_a] + ([] if self._log_diag is None
                                else [self._log_diag])
    return (tuple(map(tf.convert_to_tensor, first)),
            (tf.convert_to_tensor(self._kernel_b),))

  def _first_kernel(self, kernel, log_diag=None):
    diagonal = (tf.ones([self.channels], self.dtype) if log_diag is None
                else tf.exp(_util.bounded_log_diagonal(log_diag)))
    return triangular_conv.triangular_kernel(kernel, diagonal, _FIRST_CORNER)

  def _second_kernel(self, kernel):
    return triangular_conv.triangular_kernel(
        kernel, tf.ones([self.channels], self.dtype), _SECOND_CORNER)

  def plan_inverse(self, width):
    """The pair of `InversePlan`s of the current weights (first factor,
    second), for images `width` pixels wide."""
    (first, second), kernels = self._weights(), self.effective_kernels()
    return (triangular_conv.inverse_plan(kernels[0], width, _FIRST_CORNER,
                                         first),
            triangular_conv.inverse_plan(kernels[1], width, _SECOND_CORNER,
                                         second))

  def _forward(self, x):
    images, restore = self._images(x)
    kernel_a, kernel_b = self.effective_kernels()
    y = triangular_conv.causal_conv2d(images, kernel_a, _FIRST_CORNER)
    y = triangular_conv.causal_conv2d(y, kernel_b, _SECOND_CORNER)
    if self._bias is not None:
      y += self._bias
    return restore(y)

  def _inverse(self, y):
    plans = _util.called(self._inverse_plan)
    if plans is None:
      return self._solve(y, triangular_conv.solve_rows)
    images, restore = self._images_without(self._bias, y)
    (first, second), (first_plan, second_plan) = self._weights(), plans
    h = triangular_conv.solve_with_plan(images, second_plan, second,
                                        self._second_kernel, _SECOND_CORNER)
    return restore(triangular_conv.solve_with_plan(
        h, first_plan, first, self._first_kernel, _FIRST_CORNER))

  def inverse_reference(self, y):
    """The inverse by the plain pixel-by-pixel solver (slow; for tests and
    for timing the sequential inverse the Emerging paper used)."""
    return self._solve(y, triangular_conv.solve_raster)

  def _solve(self, y, solver):
    """Undoes the bias, then the two factors in turn, with `solver`."""
    images, restore = self._images_without(self._bias, y)
    kernel_a, kernel_b = self.effective_kernels()
    h = solver(images, kernel_b, _SECOND_CORNER)
    return restore(solver(h, kernel_a, _FIRST_CORNER))
