"""The CInC convolution: an invertible `k x k` convolution padded on one corner."""

import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp.bijectors import _base
from cinc_tfp.bijectors import _util
from cinc_tfp.bijectors import triangular_conv


__all__ = ['CIncConv2D']



class CIncConv2D(_base.PixelwiseVolumeBijector):
  """Characterizable invertible `k x k` convolution (Nagar et al., 2021).

  For images `x` of shape `[..., H, W, C]`, with `k` odd and the padded corner
  top-left (the other corners are the mirror images):

  ```none
  y[i, j] = sum_{a, b < k} x[i - k + 1 + a, j - k + 1 + b] @ K[a, b] + bias
  ```

  with `x` zero outside the image. Output pixel `(i, j)` depends only on
  pixels above and to its left, so in raster order the Jacobian is block
  triangular with the diagonal tap `K[k-1, k-1]` in every diagonal block. Here
  that tap is `U + diag(d)` with `U` strictly upper triangular (the lower
  triangle of the stored kernel tap is masked out) and `d = exp(s)` with
  `s = 8 tanh(log_diag / 8)` (that is `s ~ log_diag` near 0, and `e^-8 < d <
  e^8` always, so that no optimizer step can make `d` zero in float32), or
  `d = 1` when `log_diag` is `None` (volume preserving). So the map is
  invertible for every value of the parameters and

  ```none
  log|det J| = H * W * sum_c s[c].
  ```

  With `reverse_channels`, the output's channels come in reverse order,
  `y[..., ::-1]` (RealNVP's and Glow's "reverse" between steps), folded into
  the convolution: the forward reverses the kernel's output axis and the
  bias, the planned inverse takes the reversal into its matrices, so it
  costs no op on the images.

  The inverse is exact forward substitution, one image row at a time (`H`
  sequential steps, see `triangular_conv.solve_rows`). Its matrices depend
  on the weights only: `plan_inverse(W)` computes them once, and a
  `CIncConv2D` given that plan as `inverse_plan` inverts without computing
  them as long as its weights equal those the plan was made from, and
  falls back to the plain solve otherwise. A plan made for the image height
  too (`plan_inverse(W, H)`, `H W <= triangular_conv.ONE_CONV_MAX_PIXELS`)
  also inverts one image by one `H x W` convolution
  (`triangular_conv.inverse_kernel`).

  It takes parameters only, tensors or variables (`init.cinc_conv` gives the
  starting ones); a Keras model that owns the weights builds it from them.
  Any `k >= 1` is invertible; the CInC flow uses odd `k`, and Emerging's two
  factors are `k = 2` convolutions at opposite corners.
  """

  def __init__(self,
               kernel,
               log_diag=None,
               bias=None,
               *,
               corner='top_left',
               reverse_channels=False,
               inverse_plan=None,
               check_plan=True,
               validate_args=False,
               name='cinc_conv2d'):
    """Builds the bijector.

    Args:
      kernel: `[k, k, C, C]` weights (HWIO).
      log_diag: `[C]` free parameter of the diagonal of the diagonal tap
        (its log, softly bounded to [-8, 8]); `None` means a unit diagonal
        (volume preserving).
      bias: `[C]` bias, or `None` for none.
      corner: padded corner: 'top_left', 'top_right', 'bottom_left' or
        'bottom_right'.
      reverse_channels: reverse the channels of the output.
      inverse_plan: optional `triangular_conv.InversePlan` from
        `plan_inverse`, for images of its width, or a function of no
        arguments that returns one (called only when an inverse is built).
      check_plan: compare the weights with the plan's at each inverse
        (`triangular_conv.solve_with_plan`); `False` only when the caller
        has checked that they are equal, as `CIncFlow.decode` does once for
        all its layers.
      validate_args: check inputs for NaN and infinite values.
      name: name scope.
    """
    parameters = dict(locals())
    triangular_conv.check_corner(corner)
    with tf.name_scope(name) as scope_name:
      dtype = getattr(kernel, 'dtype', None)
      self._kernel = _util.variable_or_tensor(kernel, dtype, 'kernel')
      dtype = self._kernel.dtype
      self._log_diag = _util.variable_or_tensor(log_diag, dtype, 'log_diag')
      self._bias = _util.variable_or_tensor(bias, dtype, 'bias')
      _util.check_float_dtype(dtype, 'CIncConv2D')
      shape = self._kernel.shape
      if (shape.rank != 4 or shape[0] != shape[1] or shape[2] != shape[3] or
          0 in shape):
        raise ValueError(
            f'CIncConv2D: kernel must have shape [k, k, C, C] with k, C >= 1, '
            f'got {shape}.')
      if not (inverse_plan is None or callable(inverse_plan) or
              isinstance(inverse_plan, triangular_conv.InversePlan)):
        raise ValueError(
            f'CIncConv2D: inverse_plan must be an InversePlan (from '
            f'plan_inverse), a function that returns one, or None; got '
            f'{inverse_plan!r}.')
      self._corner = corner
      self._reverse_channels = bool(reverse_channels)
      self._inverse_plan = inverse_plan
      self._check_plan = check_plan
      self._channels = shape[-1]
      _util.check_vectors(dict(log_diag=self._log_diag, bias=self._bias),
                          self._channels, 'CIncConv2D')
      # The weights actually used, so that equality and TFP's cache tell
      # bijectors with different variables apart.
      parameters.update(kernel=self._kernel, log_diag=self._log_diag,
                        bias=self._bias)
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
    return dict(
        kernel=properties(event_ndims=4),
        log_diag=properties(event_ndims=1),
        bias=properties(event_ndims=1))

  @property
  def kernel(self):
    return self._kernel

  @property
  def log_diag(self):
    return self._log_diag

  @property
  def bias(self):
    return self._bias

  @property
  def corner(self):
    return self._corner

  @property
  def reverse_channels(self):
    return self._reverse_channels

  def _pixel_log_det(self):
    if self._log_diag is None:
      return None
    return tf.reduce_sum(_util.bounded_log_diagonal(self._log_diag))

  def effective_kernel(self):
    """The `[k, k, C, C]` kernel actually applied (triangular diagonal tap)."""
    return self._kernel_of(*self.plan_parameters())

  def plan_parameters(self):
    """The tensors that determine the effective kernel, which an
    `InversePlan` of this bijector is keyed on."""
    return tuple(tf.convert_to_tensor(weight)
                 for weight in (self._kernel, self._log_diag)
                 if weight is not None)

  def _kernel_of(self, kernel, log_diag=None):
    if log_diag is None:
      diagonal = tf.ones([self.channels], self.dtype)
    else:
      diagonal = tf.exp(_util.bounded_log_diagonal(log_diag))
    return triangular_conv.triangular_kernel(kernel, diagonal, self._corner)

  def _reversed(self, tensor):
    """`tensor` with its last axis reversed if the output's channels are."""
    if not self._reverse_channels or tensor is None:
      return tensor
    return tf.reverse(tensor, [-1])

  def _forward(self, x):
    images, restore = self._images(x)
    y = triangular_conv.causal_conv2d(
        images, self._reversed(self.effective_kernel()), self._corner)
    if self._bias is not None:
      y += self._reversed(self._bias)
    return restore(y)

  def plan_inverse(self, width, height=None):
    """The `InversePlan` of the current weights, for images `width` pixels
    wide (and `height` high: see `triangular_conv.inverse_plan`)."""
    return triangular_conv.inverse_plan(
        self.effective_kernel(), width, self._corner, self.plan_parameters(),
        height, reverse_channels=self._reverse_channels)

  def _inverse(self, y):
    plan = _util.called(self._inverse_plan)
    if plan is None:
      return self._solve(y, triangular_conv.solve_rows)
    if plan.parameters[0].dtype != self.dtype:
      raise ValueError(
          f'CIncConv2D: the inverse plan was made from '
          f'{plan.parameters[0].dtype.name} weights; these are '
          f'{self.dtype.name}.')
    images, restore = self._images_without(self._reversed(self._bias), y)
    return restore(triangular_conv.solve_with_plan(
        images, plan, self.plan_parameters(), self._kernel_of, self._corner,
        check=self._check_plan, reverse_channels=self._reverse_channels))

  def inverse_reference(self, y):
    """The inverse by the plain pixel-by-pixel solver (slow; for tests and
    for timing the sequential inverse the paper used)."""
    return self._solve(y, triangular_conv.solve_raster)

  def _solve(self, y, solver):
    """Undoes the bias and the reversal, then the convolution with
    `solver`."""
    images, restore = self._images_without(self._reversed(self._bias), y)
    return restore(solver(self._reversed(images), self.effective_kernel(),
                          self._corner))

