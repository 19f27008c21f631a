"""AffineCoupling: exact log-det and inverse of the two-block baseline."""

import numpy as np
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
  tf.debugging.assert_near(y[..., 2:],
                           x[..., 2:] * (1e-3 + (1 - 1e-3) * tf.sigmoid(2.)))


class _Constant:
  """A stand-in network whose output is one value everywhere."""

  def __init__(self, value, channels):
    self.value = value
    self.channels = channels

  def __call__(self, x):
    shape = tf.concat([tf.shape(x)[:-1], [self.channels]], axis=0)
    return tf.fill(shape, tf.constant(self.value, x.dtype))


@pytest.mark.parametrize('raw_scale', [-1e4, -50., 0., 1e4])
def test_sigmoid_scale_is_kept_from_zero(raw_scale):
  """The inverse divides by at most 1 / 1e-3 however low the network's
  raw scale: no overflow from latents far in the tails."""
  coupling = bijectors.AffineCoupling(_Constant(raw_scale, 4))
  y = tf.fill([2, 3, 3, 4], 1e3)
  x = coupling.inverse(y)
  scale = 1e-3 + (1 - 1e-3) * tf.sigmoid(raw_scale + 2.)
  np.testing.assert_allclose(x[..., 2:], 1e3 / scale - raw_scale, rtol=1e-5)
  assert np.isfinite(x.numpy()).all()
  assert np.abs(x.numpy()).max() <= 1.001 * (1e3 / 1e-3 + abs(raw_scale))
  np.testing.assert_allclose(
      coupling.forward_log_det_jacobian(x, event_ndims=3),
      np.full([2], 3 * 3 * 2 * np.log(scale)), rtol=1e-5)


def test_odd_channels_are_a_clear_error():
  coupling = bijectors.AffineCoupling(
      coupling_checks.random_network(2, 1, 'float32', seed=2))
  with pytest.raises(ValueError, match='divisible by 2 to split it into 2 blocks, got 3'):
    coupling.forward(tf.zeros([2, 2, 3]))
  # A network of the wrong output size names itself and what it must give.
  for outputs in (3, 6):
    wrong = bijectors.AffineCoupling(
        coupling_checks.random_network(outputs, 2, 'float32', seed=2))
    with pytest.raises(ValueError, match='network 0 must output 2 x 2 channels'):
      wrong.forward(tf.zeros([2, 2, 4]))
