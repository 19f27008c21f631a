"""Glow's invertible 1x1 convolution, LU-parametrized."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp.bijectors import _base
from cinc_tfp.bijectors import _util

__all__ = ['Conv1x1']


class Conv1x1(_base.PixelwiseVolumeBijector):
  """Invertible 1x1 convolution `y[i, j] = x[i, j] @ W` (Kingma & Dhariwal, 2018).

  `W = P L (U + diag(sign * exp(log_scale)))` with `P` a fixed permutation,
  `L` unit lower triangular and `U` strictly upper triangular (both read from
  one `[C, C]` matrix `lower_upper`, whose diagonal is ignored) and `sign` a
  fixed `+-1` vector. `W` is invertible for every value of the parameters, and

  ```none
  log|det J| = H * W * sum_c log_scale[c].
  ```

  With `reverse_channels`, the output's channels come in reverse order (the
  columns of `W` reversed, so at no cost), as `CIncConv2D`'s.

  Parameters only; `init.conv1x1` gives Glow's start, the LU factors of a
  random rotation. (TFP's `ScaleMatvecLU` holds the same factors, but solves
  per pixel with the matrix broadcast over the image, 10x slower at batch
  100 in the layers benchmark; this one inverts `W` once per call.)
  """

  def __init__(self,
               lower_upper,
               log_scale,
               sign=None,
               permutation=None,
               *,
               reverse_channels=False,
               validate_args=False,
               name='conv1x1'):
    """Builds the bijector.

    Args:
      lower_upper: `[C, C]`; its strict lower and upper triangles are `L` and
        `U`.
      log_scale: `[C]` log of the absolute diagonal of the upper factor.
      sign: `[C]` fixed signs of that diagonal (`+-1`); `None` means all `+1`.
      permutation: `[C]` int permutation `P` (rows of `W` as in
        `tf.linalg.lu_reconstruct`); `None` means the identity.
      reverse_channels: reverse the channels of the output.
      validate_args: check inputs for NaN and infinite values.
      name: name scope.
    """
    parameters = dict(locals())
    with tf.name_scope(name) as scope_name:
      dtype = getattr(lower_upper, 'dtype', None)
      self._lower_upper = _util.variable_or_tensor(lower_upper, dtype,
                                                   'lower_upper')
      dtype = self._lower_upper.dtype
      self._log_scale = _util.variable_or_tensor(log_scale, dtype, 'log_scale')
      _util.check_float_dtype(dtype, 'Conv1x1')
      shape = self._lower_upper.shape
      if shape.rank != 2 or shape[0] != shape[1] or shape[0] == 0:
        raise ValueError(f'Conv1x1: lower_upper must have shape [C, C] with '
                         f'C >= 1, got {shape}.')
      self._channels = shape[-1]
      self._reverse_channels = bool(reverse_channels)
      if sign is None:
        sign = np.ones([self._channels])
      if permutation is None:
        permutation = np.arange(self._channels)
      self._sign = tf.convert_to_tensor(sign, dtype, name='sign')
      self._permutation = tf.convert_to_tensor(
          permutation, tf.int32, name='permutation')
      _util.check_vectors(
          dict(log_scale=self._log_scale, sign=self._sign,
               permutation=self._permutation), self._channels, 'Conv1x1')
      _check_sign_and_permutation(self._sign, self._permutation)
      # The weights actually used (see CIncConv2D).
      parameters.update(lower_upper=self._lower_upper,
                        log_scale=self._log_scale, sign=self._sign,
                        permutation=self._permutation)
      super().__init__(
          forward_min_event_ndims=3,
          is_constant_jacobian=True,
          validate_args=validate_args,
          parameters=parameters,
          dtype=dtype,
          name=scope_name)

  @property
  def lower_upper(self):
    return self._lower_upper

  @property
  def log_scale(self):
    return self._log_scale

  @property
  def sign(self):
    return self._sign

  @property
  def permutation(self):
    return self._permutation

  @property
  def reverse_channels(self):
    return self._reverse_channels

  @classmethod
  def _parameter_properties(cls, dtype):
    properties = tfp.util.ParameterProperties
    return dict(
        lower_upper=properties(event_ndims=2),
        log_scale=properties(event_ndims=1),
        sign=properties(event_ndims=1,
                        default_constraining_bijector_fn=_fixed),
        permutation=properties(event_ndims=1,
                               default_constraining_bijector_fn=_fixed))

  def _lu(self):
    """The packed LU factors with the diagonal `sign * exp(log_scale)`."""
    lower_upper = tf.convert_to_tensor(self._lower_upper)
    return tf.linalg.set_diag(lower_upper, self._sign * tf.exp(self._log_scale))

  def matrix(self):
    """The `[C, C]` matrix `W` (its columns reversed with
    `reverse_channels`)."""
    matrix = tf.linalg.lu_reconstruct(self._lu(), self._permutation)
    return tf.reverse(matrix, [1]) if self._reverse_channels else matrix

  def _pixel_log_det(self):
    return tf.reduce_sum(self._log_scale)

  def _forward(self, x):
    x = _util.assert_finite(x, self.validate_args, self.name)
    _util.check_channels(x, self._channels, self.name)
    return tf.tensordot(x, self.matrix(), [[-1], [0]])

  def _inverse(self, y):
    y = _util.assert_finite(y, self.validate_args, self.name)
    _util.check_channels(y, self._channels, self.name)
    inverse = tf.linalg.lu_matrix_inverse(self._lu(), self._permutation)
    if self._reverse_channels:
      inverse = tf.reverse(inverse, [0])
    return tf.tensordot(y, inverse, [[-1], [0]])


def _fixed():
  raise NotImplementedError(
      'Conv1x1: sign and permutation are fixed, not trainable parameters.')


def _check_sign_and_permutation(sign, permutation):
  """Fails unless `sign` is all `+-1` and `permutation` permutes `0..C-1`.

  Both are fixed (not trained), so they are checked once, when known.
  """
  sign, permutation = tf.get_static_value(sign), tf.get_static_value(
      permutation)
  if sign is not None and not np.all(np.abs(sign) == 1):
    raise ValueError(f'Conv1x1: sign must hold only +1 and -1, got {sign}.')
  if permutation is not None and sorted(permutation) != list(
      range(len(permutation))):
    raise ValueError(
        f'Conv1x1: permutation must be a permutation of 0..C-1, got '
        f'{permutation}.')
