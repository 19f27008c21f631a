"""fused.forward_and_log_det: TFP's forward and log-det, networks run once."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp import bijectors
from cinc_tfp.bijectors import init
from tests import coupling_checks

tfb = tfp.bijectors


def _counted_chain():
  networks = [coupling_checks.CountingNetwork(coupling_checks.random_network(
      2 * 3, i * 3, 'float64', seed=i)) for i in (1, 2, 3)]
  conv = bijectors.CIncConv2D(**init.cinc_conv(12, seed=0, dtype=tf.float64))
  chain = tfb.Chain([
      tfb.Reshape([48], event_shape_in=[2, 2, 12]),
      bijectors.QuadCoupling(networks), conv, bijectors.Squeeze()])
  return chain, networks


def test_chain_of_package_bijectors_agrees_with_tfp_running_each_network_once():
  chain, networks = _counted_chain()
  x = tf.random.stateless_normal([3, 4, 4, 3], [1, 2], dtype=tf.float64)
  z, log_det = bijectors.forward_and_log_det(chain, x)
  assert [network.calls for network in networks] == [1, 1, 1]
  np.testing.assert_allclose(z, chain.forward(tf.identity(x)), rtol=1e-12)
  np.testing.assert_allclose(
      log_det, chain.forward_log_det_jacobian(tf.identity(x), event_ndims=3),
      rtol=1e-12)
  assert log_det.shape == [3]


def test_inverse_through_the_chain_runs_each_network_once():
  chain, networks = _counted_chain()
  z = tf.random.stateless_normal([3, 48], [3, 4], dtype=tf.float64)
  x, log_det = bijectors.inverse_and_log_det(chain, z)
  assert [network.calls for network in networks] == [1, 1, 1]
  np.testing.assert_allclose(x, chain.inverse(tf.identity(z)), rtol=1e-12)
  # Against TFP's own: minus the forward log-det at the inverse.
  np.testing.assert_allclose(
      log_det, -chain.forward_log_det_jacobian(tf.identity(x), event_ndims=3),
      rtol=1e-12)
  assert log_det.shape == [3]


def test_event_ndims_follow_the_chain():
  # Scale's log-det must be summed over the 3-d events it is given.
  chain = tfb.Chain([tfb.Reshape([32], event_shape_in=[4, 4, 2]),
                     tfb.Shift(1.), tfb.Scale([2., 3.])])
  x = tf.random.stateless_normal([5, 4, 4, 2], [3, 4])
  z, log_det = bijectors.forward_and_log_det(chain, x)
  np.testing.assert_allclose(z, chain.forward(tf.identity(x)))
  np.testing.assert_allclose(
      np.broadcast_to(log_det, [5]), 16. * (np.log(2.) + np.log(3.)),
      rtol=1e-6)


def test_parts_are_the_chains_leaves_in_the_order_they_apply():
  chain, _ = _counted_chain()
  nested = tfb.Chain([tfb.Identity(), chain])
  found = bijectors.fused.parts(nested, 3)
  assert [type(part).__name__ for part, _ in found] == [
      'Squeeze', 'CIncConv2D', 'QuadCoupling', 'Reshape', 'Identity']
  assert [event_ndims for _, event_ndims in found] == [3, 3, 3, 3, 1]
