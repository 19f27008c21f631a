"""Checks every image bijector must pass: exact log-det and exact inverse."""

import numpy as np
import tensorflow as tf

from cinc_tfp.bijectors import init

# Round-trip tolerances: float32 keeps ~6 digits through a few solves;
# float64 round trips measured within ~4e-15.
TOLERANCE = {tf.float32: dict(rtol=1e-4, atol=1e-4),
             tf.float64: dict(rtol=1e-12, atol=1e-12)}
# Log-dets of maps of up to ~100 dimensions, summed in float32, agree with
# slogdet to ~2e-6 (measured); float64 to ~4e-15.
LOG_DET_TOLERANCE = {tf.float32: dict(rtol=1e-5, atol=2e-5),
                     tf.float64: dict(rtol=1e-12, atol=1e-12)}


def perturbed(parameters, scale, seed=0):
  """Initial `parameters` (`bijectors.init`) moved away from their (often
  trivial) start; the `init.FIXED` ones are kept."""
  generator = tf.random.Generator.from_seed(seed)
  return {name: value if name in init.FIXED else
          value + scale * generator.normal(value.shape, dtype=value.dtype)
          for name, value in parameters.items()}


def dense_jacobian(fn, x):
  """The `[n, m]` Jacobian of `fn` at one unbatched input `x`."""
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x)
  jacobian = tape.jacobian(y, x)
  return tf.reshape(jacobian, [int(np.prod(y.shape)), int(np.prod(x.shape))])


def brute_force_log_det(fn, x):
  """`log|det J|` of `fn` at one unbatched input `x`, from the dense Jacobian."""
  sign, log_abs_det = tf.linalg.slogdet(dense_jacobian(fn, x))
  assert sign != 0, 'Jacobian is singular'
  return log_abs_det


def check_bijector(bijector, event_shape, dtype, seed=0):
  """Asserts both log-dets == brute force, and exact round trips.

  Every comparison is against an independent computation: log-dets against
  `slogdet` of the Jacobian of `forward` (or `inverse`) at each image of a
  batch, round trips through `tf.identity` so that TFP's forward/inverse cache
  cannot hand an input back.
  """
  generator = tf.random.Generator.from_seed(seed)
  xs = generator.normal([2] + list(event_shape), dtype=dtype)
  ys = bijector.forward(xs)
  # Log-dets of a batch, image by image, against slogdet of the Jacobians.
  forward_log_det = bijector.forward_log_det_jacobian(xs)
  inverse_log_det = bijector.inverse_log_det_jacobian(tf.identity(ys))
  for i in range(2):
    expected = brute_force_log_det(bijector.forward, xs[i])
    np.testing.assert_allclose(np.broadcast_to(forward_log_det, [2])[i],
                               expected, **LOG_DET_TOLERANCE[dtype])
    np.testing.assert_allclose(np.broadcast_to(inverse_log_det, [2])[i],
                               -expected, **LOG_DET_TOLERANCE[dtype])
    np.testing.assert_allclose(
        np.broadcast_to(inverse_log_det, [2])[i],
        brute_force_log_det(bijector.inverse, tf.identity(ys[i])),
        **LOG_DET_TOLERANCE[dtype])
  # Round trips, with two batch dimensions.
  xs = generator.normal([2, 3] + list(event_shape), dtype=dtype)
  ys = bijector.forward(xs)
  np.testing.assert_allclose(bijector.inverse(tf.identity(ys)), xs,
                             **TOLERANCE[dtype])
  # Outputs of other inputs (random outputs can overflow an exp-scaled
  # coupling's inverse): forward undoes inverse.
  ys = tf.identity(bijector.forward(generator.normal(xs.shape, dtype=dtype)))
  np.testing.assert_allclose(bijector.forward(tf.identity(bijector.inverse(ys))),
                             ys, **TOLERANCE[dtype])


def check_reversed_output(make, dtype, event_shape=(4, 5, 3)):
  """Asserts that `make(reverse_channels=True)` passes `check_bijector` and
  outputs `make()`'s output with its channels reversed; returns it."""
  bijector = make(reverse_channels=True)
  check_bijector(bijector, event_shape, dtype)
  x = tf.random.stateless_normal([2] + list(event_shape), [3, 4], dtype=dtype)
  np.testing.assert_allclose(bijector.forward(x), make().forward(x)[..., ::-1],
                             **TOLERANCE[dtype])
  return bijector


def check_empty_batches(bijector, event_shape=(4, 5, 3)):
  """Asserts that batches holding no image keep their shape both ways."""
  for batch_shape in ([0], [2, 0]):
    x = tf.zeros(batch_shape + list(event_shape), bijector.dtype)
    assert bijector.forward(x).shape == x.shape
    assert bijector.inverse(x).shape == x.shape
