"""QuadCoupling: exact log-det and inverse of the four-block coupling."""

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import bijectors
from tests import bijector_checks
from tests import coupling_checks


def quad(channels, dtype, scale='sigmoid', seed=0):
  block = channels // 4
  return bijectors.QuadCoupling(
      [coupling_checks.random_network(2 * block, i * block, dtype.name, seed + i)
       for i in (1, 2, 3)], scale=scale)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('scale', ['sigmoid', 'exp'])
@pytest.mark.parametrize('shape', [(4, 4, 4), (3, 5, 8)])
def test_log_det_and_inverse_exact(shape, scale, dtype):
  bijector_checks.check_bijector(quad(shape[-1], dtype, scale), shape, dtype)


def test_each_block_is_conditioned_on_all_blocks_before_it():
  coupling = quad(4, tf.float64)
  jacobian = bijector_checks.dense_jacobian(
      coupling.forward, tf.random.stateless_normal([3, 3, 4], [0, 1],
                                                   dtype=tf.float64)).numpy()
  # Channel c of the output depends on channels <= c of the input, and on
  # every earlier block somewhere in the image.
  dependence = np.abs(jacobian.reshape(3, 3, 4, 3, 3, 4)).sum((0, 1, 3, 4))
  assert np.all(dependence[np.tril_indices(4)] > 0)
  np.testing.assert_array_equal(np.triu(dependence, 1), 0.)


def test_inverse_reads_the_recovered_blocks_not_the_outputs():
  coupling = quad(8, tf.float64, scale='exp')
  x = tf.random.stateless_normal([2, 4, 4, 8], [2, 3], dtype=tf.float64)
  y = coupling.forward(x)
  # The outputs differ a lot from the inputs, block 2 included: an inverse
  # that conditioned block 3 on y2 instead of x2 could not round-trip.
  assert np.max(np.abs(y[..., 2:4] - x[..., 2:4])) > 0.5
  np.testing.assert_allclose(coupling.inverse(tf.identity(y)), x, rtol=1e-10,
                             atol=1e-10)


def test_bad_input_is_a_clear_error():
  coupling = quad(4, tf.float32)
  with pytest.raises(ValueError, match='divisible by 4 to split it into 4 blocks, got 6'):
    coupling.forward(tf.zeros([2, 2, 6]))
  with pytest.raises(ValueError, match='needs 3 networks, got 1'):
    bijectors.QuadCoupling(coupling.networks[:1])
  with pytest.raises(ValueError, match='scale must be one of'):
    bijectors.QuadCoupling(coupling.networks, scale='softplus')
  with pytest.raises(ValueError, match='expected images'):
    coupling.inverse(tf.zeros([4, 4]))
