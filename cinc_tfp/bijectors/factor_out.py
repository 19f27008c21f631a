"""Glow's multi-scale split: half the channels leave under a learned prior."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp.bijectors import _base
from cinc_tfp.bijectors import _util
from cinc_tfp.bijectors import fused

__all__ = ['FactorOut']

# The bound of the prior's log standard deviation (see the class docstring).
MAX_LOG_SIGMA = 8.


class FactorOut(_base.NetworkBijector):
  """Factors out half the channels, normalized by a conditional Gaussian prior.

  For `x` of shape `[..., H, W, C]` split along channels into `x1` (kept) and
  `x2` (factored out), with `[mu, r] = prior_network(x1)` and `log_sigma =
  8 tanh(r / 8)` (near `r` where priors live, and never beyond `+-8`, so that
  sampling from latents far out in the tails cannot overflow):

  ```none
  z2 = (x2 - mu) * exp(-log_sigma)
  z  = concat(flatten(z2), inner(x1))          # a flat [H*W*C] vector
  log|det J| = -sum log_sigma + log|det J_inner(x1)|
  ```

  Under a standard normal `z2`, `x2 | x1 ~ N(mu, sigma^2)`: Glow's split
  prior, written as a bijector so that the whole multi-scale flow is one
  `tfb.Chain` into a standard normal base (and sampling at temperature `T`
  is scaling that base by `T`). `inner` maps `[..., H, W, C/2]` to a flat
  `[..., H*W*C/2]` vector (the rest of the flow).
  """

  def __init__(self, prior_network, inner, image_shape, condition=None,
               validate_args=False, name='factor_out'):
    """Builds the bijector.

    Args:
      prior_network: maps `[B, H, W, C/2]` to `[B, H, W, C]` (mean, then the
        raw log standard deviation `r` of `x2`).
      inner: bijector from `[..., H, W, C/2]` images to flat vectors.
      image_shape: static `(H, W, C)` of the input, `C` even.
      condition: optional `[..., C]`, added to the prior network's output at
        every pixel (a class's learned offsets of the mean and of `r`); its
        batch dimensions broadcast against the images'.
      validate_args: check inputs for NaN and infinite values.
      name: name scope.
    """
    parameters = dict(locals())
    height, width, channels = image_shape
    if channels % 2:
      raise ValueError(
          f'{name}: needs an even channel count to split, got image shape '
          f'{tuple(image_shape)}.')
    if condition is not None and (condition.shape.rank in (None, 0) or
                                  condition.shape[-1] != channels):
      raise ValueError(
          f'{name}: condition must have shape [..., {channels}], got '
          f'{condition.shape}.')
    with tf.name_scope(name) as scope_name:
      self._prior_network = prior_network
      self._inner = inner
      self._image_shape = (height, width, channels)
      self._condition = condition
      super().__init__(
          forward_min_event_ndims=3,
          inverse_min_event_ndims=1,
          validate_args=validate_args,
          parameters=parameters,
          name=scope_name)

  @classmethod
  def _parameter_properties(cls, dtype):
    # The condition's batch dimensions are the bijector's batch shape (with
    # those of `inner`, called on images of the input's rank).
    return dict(
        condition=tfp.util.ParameterProperties(event_ndims=1),
        inner=tfp.util.BatchedComponentProperties(
            event_ndims=lambda self, x_event_ndims: x_event_ndims))

  @property
  def inner(self):
    return self._inner

  @property
  def _size(self):
    return int(np.prod(self._image_shape))

  def _forward_event_shape(self, input_shape):
    if not input_shape[-3:].is_compatible_with(self._image_shape):
      raise ValueError(
          f'{self.name}: built for images of shape {self._image_shape}, got '
          f'shape {input_shape}.')
    return input_shape[:-3].concatenate([self._size])

  def _forward_event_shape_tensor(self, input_shape):
    return tf.concat([input_shape[:-3], [self._size]], axis=0)

  def _inverse_event_shape(self, output_shape):
    if not output_shape[-1:].is_compatible_with([self._size]):
      raise ValueError(
          f'{self.name}: expected latent vectors of size {self._size}, got '
          f'shape {output_shape}.')
    return output_shape[:-1].concatenate(self._image_shape)

  def _inverse_event_shape_tensor(self, output_shape):
    return tf.concat([output_shape[:-1], self._image_shape], axis=0)

  def _mean_and_log_sigma(self, kept):
    """The prior of `x2` given `kept` (`[..., H, W, C/2]`), with the
    condition's batch broadcast in."""
    images, restore = _util.as_images(kept)
    prior = restore(self._prior_network(images))
    if self._condition is not None:
      prior += self._condition[..., tf.newaxis, tf.newaxis, :]
    mean, raw = tf.split(prior, 2, axis=-1)
    return mean, _util.soft_bound(raw, MAX_LOG_SIGMA)

  def forward_and_log_det(self, x):
    """`(z, log|det J|)`, running the prior network and `inner` once."""
    if tuple(_util.image_shape(x, self.name)) != self._image_shape:
      raise ValueError(
          f'{self.name}: built for images of shape {self._image_shape}, got '
          f'{x.shape}.')
    x = _util.assert_finite(x, self.validate_args, self.name)
    kept, factored = tf.split(x, 2, axis=-1)
    mean, log_sigma = self._mean_and_log_sigma(kept)
    z_factored = _flat((factored - mean) * tf.exp(-log_sigma))
    z_inner, inner_log_det = fused.forward_and_log_det(self._inner, kept)
    log_det = inner_log_det - tf.reduce_sum(log_sigma, axis=[-3, -2, -1])
    return _concat_broadcast(z_factored, z_inner), log_det

  def _forward(self, x):
    return self.forward_and_log_det(x)[0]

  def _forward_log_det_jacobian(self, x):
    return self.forward_and_log_det(x)[1]

  def inverse_and_log_det(self, z):
    """`(x, log|det dx/dz|)`, running the prior network and `inner` once."""
    z = _util.assert_finite(z, self.validate_args, self.name)
    height, width, channels = self._image_shape
    factored_size = self._size // 2
    if z.shape[-1] != self._size:
      raise ValueError(
          f'{self.name}: expected latent vectors of size {self._size}, got '
          f'shape {z.shape}.')
    kept, inner_log_det = fused.inverse_and_log_det(
        self._inner, z[..., factored_size:])
    mean, log_sigma = self._mean_and_log_sigma(kept)
    z_factored = _unflat(z[..., :factored_size],
                         [height, width, channels // 2])
    x2 = z_factored * tf.exp(log_sigma) + mean
    # `x2`'s batch shape broadcasts `kept`'s (through `mean`) with `z`'s, of
    # which `kept`'s is a broadcast already: without a condition of their own
    # the two have one batch shape, and join without broadcasting.
    x = (tf.concat([kept, x2], axis=-1) if self._condition is None else
         _concat_broadcast(kept, x2))
    log_det = inner_log_det + tf.reduce_sum(log_sigma, axis=[-3, -2, -1])
    return x, log_det

  def _inverse(self, z):
    return self.inverse_and_log_det(z)[0]

  def _inverse_log_det_jacobian(self, z):
    return self.inverse_and_log_det(z)[1]


def _flat(images):
  """`[..., H, W, C]` as `[..., H*W*C]`."""
  return _reshape_event(images, 3, [int(np.prod(images.shape[-3:]))])


def _unflat(vectors, image_shape):
  """`[..., H*W*C]` as `[..., H, W, C]`."""
  return _reshape_event(vectors, 1, image_shape)


def _reshape_event(tensor, event_rank, event_shape):
  """`tensor` with its last `event_rank` axes reshaped to `event_shape`. A
  single batch axis is left to `reshape` (`-1`), so that a graph with an
  unknown batch size computes no shapes (docs/performance.md)."""
  if tensor.shape.rank == event_rank + 1:
    return tf.reshape(tensor, [-1, *event_shape])
  return tf.reshape(tensor, tf.concat([tf.shape(tensor)[:-event_rank],
                                       event_shape], axis=0))


def _concat_broadcast(first, second):
  """`first` and `second` joined along their last axis (of static sizes),
  their other axes broadcast to a common shape."""
  batch = tf.broadcast_dynamic_shape(tf.shape(first)[:-1],
                                     tf.shape(second)[:-1])
  joined = tf.concat(
      [tf.broadcast_to(part, tf.concat([batch, [part.shape[-1]]], axis=0))
       for part in (first, second)], axis=-1)
  return tf.ensure_shape(
      joined, tf.broadcast_static_shape(first.shape[:-1], second.shape[:-1])
      .concatenate([first.shape[-1] + second.shape[-1]]))
