"""Checks every image bijector must pass: exact log-det and exact inverse."""

import numpy as np
import tensorflow as tf

# Round-trip tolerances: float32 keeps ~6 digits through a few solves.
TOLERANCE = {tf.float32: dict(rtol=1e-4, atol=1e-4),
             tf.float64: dict(rtol=1e-10, atol=1e-10)}
# The log-det of a 100-dimensional map summed in float32 is good to ~1e-4.
LOG_DET_TOLERANCE = {tf.float32: dict(rtol=1e-4, atol=1e-3),
                     tf.float64: dict(rtol=1e-10, atol=1e-9)}


def perturb(bijector, scale, seed=0):
  """Moves every trainable variable away from its (often trivial) start."""
  generator = tf.random.Generator.from_seed(seed)
  for variable in bijector.trainable_variables:
    variable.assign_add(scale * generator.normal(variable.shape, dtype=variable.dtype))


def dense_jacobian(fn, x):
  """The `[n, m]` Jacobian of `fn` at one unbatched input `x`."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x)
  jacobian = tape.jacobian(y, x)
  return tf.reshape(jacobian, [int(np.prod(y.shape)), int(np.prod(x.shape))])


def brute_force_log_det(bijector, x):
  """`log|det J|` of the forward map at one image, from the dense Jacobian."""
  sign, log_abs_det = tf.linalg.slogdet(dense_jacobian(bijector.forward, x))
  assert sign != 0, 'Jacobian is singular'
  return log_abs_det


def check_bijector(bijector, event_shape, dtype, seed=0):
  """Asserts log-det == brute force, and inverse/forward round trips."""
  generator = tf.random.Generator.from_seed(seed)
  x = generator.normal(event_shape, dtype=dtype)
  # Log-det against slogdet of the Jacobian, on one image.
  np.testing.assert_allclose(
      bijector.forward_log_det_jacobian(x), brute_force_log_det(bijector, x),
      **LOG_DET_TOLERANCE[dtype])
  # Round trips on a batch; tf.identity defeats TFP's forward/inverse cache.
  xs = generator.normal([3] + list(event_shape), dtype=dtype)
  ys = bijector.forward(xs)
  np.testing.assert_allclose(bijector.inverse(tf.identity(ys)), xs,
                             **TOLERANCE[dtype])
  ys = generator.normal(ys.shape, dtype=dtype)
  np.testing.assert_allclose(bijector.forward(bijector.inverse(ys)), ys,
                             **TOLERANCE[dtype])
  # Forward and inverse log-dets are negatives of each other.
  np.testing.assert_allclose(
      bijector.inverse_log_det_jacobian(tf.identity(bijector.forward(xs))),
      -bijector.forward_log_det_jacobian(xs), **LOG_DET_TOLERANCE[dtype])
