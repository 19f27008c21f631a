"""Recompute: the plain chain's map, log-det and gradients, without storing
the steps' activations."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp import bijectors
from cinc_tfp.bijectors import init
from tests import bijector_checks
from tests import coupling_checks

SHAPE = (4, 4, 4)


def _coupling(kind, channels, dtype, seed):
  """An affine or quad coupling of random networks, and their variables."""
  if kind == 'affine':
    networks = [coupling_checks.random_network(channels, channels // 2,
                                               dtype.name, seed=seed)]
    return bijectors.AffineCoupling(networks[0]), networks
  quarter = channels // 4
  networks = [coupling_checks.random_network(2 * quarter, i * quarter,
                                             dtype.name, seed=10 * seed + i)
              for i in (1, 2, 3)]
  return bijectors.QuadCoupling(networks), networks


def _steps(dtype, depth=3, shape=SHAPE, coupling='affine'):
  """`depth` steps (ActNorm, CInC convolution, coupling) from variables and
  networks, as zero-argument builders, and those variables."""
  steps, variables = [], []
  for step in range(depth):
    channels = shape[-1]
    actnorm = init.variables(bijector_checks.perturbed(
        init.actnorm(channels, dtype), 0.3, seed=step))
    conv = init.variables(bijector_checks.perturbed(
        init.cinc_conv(channels, seed=step, dtype=dtype), 0.1, seed=step))
    layer, networks = _coupling(coupling, channels, dtype, step)

    def make(actnorm=actnorm, conv=conv, layer=layer, step=step):
      return tfp.bijectors.Chain([
          layer,
          bijectors.CIncConv2D(**conv, corner=bijectors.CORNERS[step % 4]),
          bijectors.ActNorm(**actnorm)])

    steps.append(make)
    variables += list(actnorm.values()) + list(conv.values())
    for network in networks:
      variables += network.trainable_variables
  return steps, variables


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_log_det_and_inverse_exact(dtype):
  shape = (3, 2, 4)  # A 24 x 24 Jacobian: quick to build through networks.
  bijector_checks.check_bijector(
      bijectors.Recompute(_steps(dtype, shape=shape)[0]), shape, dtype)


# Gradients at rebuilt inputs: float64 agrees to rounding; float32 to the
# drift of three steps' inverses (measured: at most 1.7e-6 of a gradient's
# largest entry here).
GRADIENT_TOLERANCE = {tf.float32: 2e-5, tf.float64: 1e-10}


@pytest.mark.parametrize('coupling', ['affine', 'quad'])
@pytest.mark.parametrize('in_graph', [False, True])
@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_gradients_equal_the_stored_chains(dtype, in_graph, coupling):
  steps, variables = _steps(dtype, coupling=coupling)
  recompute = bijectors.Recompute(steps)
  x = tf.random.stateless_normal((2,) + SHAPE, [0, 1], dtype=dtype)
  weights = tf.random.stateless_normal((2,) + SHAPE, [0, 2], dtype=dtype)

  def gradients(forward_and_log_det):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y, log_det = forward_and_log_det(x)
      loss = tf.reduce_sum(weights * y**2) - tf.reduce_sum(log_det)
    return y, log_det, tape.gradient(loss, [x] + variables)

  plain = tfp.bijectors.Chain([make() for make in reversed(steps)])
  calls = [lambda t: bijectors.forward_and_log_det(plain, t),
           recompute.forward_and_log_det]
  if in_graph:
    calls = [tf.function(lambda f=f: gradients(f)) for f in calls]
  else:
    calls = [lambda f=f: gradients(f) for f in calls]
  (y, log_det, expected), (y_re, log_det_re, found) = [c() for c in calls]
  # The same map; the log-dets summed in another order.
  np.testing.assert_array_equal(y_re, y)
  np.testing.assert_allclose(log_det_re, log_det,
                             **bijector_checks.LOG_DET_TOLERANCE[dtype])
  assert all(g is not None for g in found)
  for want, got in zip(expected, found):
    scale = float(tf.reduce_max(tf.abs(want)))
    np.testing.assert_allclose(got, want, rtol=GRADIENT_TOLERANCE[dtype],
                               atol=GRADIENT_TOLERANCE[dtype] * scale)


def test_gradient_runs_each_coupling_network_once_more():
  networks = [coupling_checks.CountingNetwork(coupling_checks.random_network(
      2, i, 'float64', seed=i)) for i in (1, 2, 3)]
  recompute = bijectors.Recompute([lambda: bijectors.QuadCoupling(networks)])
  x = tf.random.stateless_normal((2,) + SHAPE, [0, 3], dtype=tf.float64)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y, log_det = recompute.forward_and_log_det(x)
    loss = tf.reduce_sum(y**2) - tf.reduce_sum(log_det)
  assert [network.calls for network in networks] == [1, 1, 1]
  assert tape.gradient(loss, x) is not None
  # The gradient's inverse and forward share one run of each network.
  assert [network.calls for network in networks] == [2, 2, 2]


def test_needs_a_step():
  with pytest.raises(ValueError, match='at least one step'):
    bijectors.Recompute([])
