"""AffineCoupling: exact log-det and inverse of the two-block baseline."""

import pytest
import tensorflow as tf

from cinc_tfp import bijectors
from tests import bijector_checks
from tests import coupling_checks


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('scale', ['sigmoid', 'exp'])
@pytest.mark.parametrize('shape', [(4, 4, 2), (3, 5, 6)])
def test_log_det_and_inverse_exact(shape, scale, dtype):
  half = shape[-1] // 2
  coupling = bijectors.AffineCoupling(
      coupling_checks.random_network(2 * half, half, dtype.name, seed=1),
      scale=scale)
  bijector_checks.check_bijector(coupling, shape, dtype)


def test_starts_as_a_constant_scaling_with_glow_network():
  from cinc_tfp import nets  # pylint: disable=g-import-not-at-top
  network = nets.CouplingNetwork(4, 8)
  coupling = bijectors.AffineCoupling(network)
  x = tf.random.stateless_normal([2, 3, 3, 4], [0, 1])
  y = coupling.forward(x)
  tf.debugging.assert_equal(y[..., :2], x[..., :2])
  tf.debugging.assert_near(y[..., 2:], x[..., 2:] * tf.sigmoid(2.))


def test_odd_channels_are_a_clear_error():
  coupling = bijectors.AffineCoupling(
      coupling_checks.random_network(2, 1, 'float32', seed=2))
  with pytest.raises(ValueError, match='divisible by 2 to split it into 2 blocks, got 3'):
    coupling.forward(tf.zeros([2, 2, 3]))
