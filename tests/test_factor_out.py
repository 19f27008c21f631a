"""FactorOut: Glow's split prior as an exact bijector to a flat latent."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp import bijectors
from cinc_tfp import nets
from tests import bijector_checks
from tests import coupling_checks

tfb = tfp.bijectors


def factor_out(shape, dtype, seed=0, condition=None):
  height, width, channels = shape
  half = channels // 2
  inner = tfb.Chain([
      tfb.Reshape([height * width * half], event_shape_in=[height, width, half]),
      bijectors.AffineCoupling(
          coupling_checks.random_network(half, half // 2, dtype.name, seed + 1))
  ])
  return bijectors.FactorOut(
      coupling_checks.random_network(channels, half, dtype.name, seed), inner,
      shape, condition=condition)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('shape', [(2, 2, 4), (3, 2, 8)])
def test_log_det_and_inverse_exact(shape, dtype):
  bijector_checks.check_bijector(factor_out(shape, dtype), shape, dtype)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_log_det_and_inverse_exact_with_a_condition(dtype):
  condition = tf.random.stateless_normal([8], [0, 2], dtype=dtype)
  bijector_checks.check_bijector(
      factor_out((2, 2, 8), dtype, condition=condition), (2, 2, 8), dtype)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_batched_condition_broadcasts_against_images(dtype):
  shape = (2, 2, 4)
  conditions = tf.random.stateless_normal([3, 1, 4], [0, 3], dtype=dtype)
  bijector = factor_out(shape, dtype, condition=conditions)
  x = tf.random.stateless_normal((5,) + shape, [0, 4], dtype=dtype)
  z, log_det = bijectors.forward_and_log_det(bijector, x)
  assert z.shape == [3, 5, 16] and log_det.shape == [3, 5]
  for k in range(3):
    member = factor_out(shape, dtype, condition=conditions[k, 0])
    member_z, member_log_det = member.forward_and_log_det(x)
    np.testing.assert_allclose(z[k], member_z,
                               **bijector_checks.LOG_DET_TOLERANCE[dtype])
    np.testing.assert_allclose(log_det[k], member_log_det,
                               **bijector_checks.LOG_DET_TOLERANCE[dtype])
  x_again, inverse_log_det = bijector.inverse_and_log_det(tf.identity(z))
  np.testing.assert_allclose(x_again, tf.broadcast_to(x, [3, 5] + list(shape)),
                             **bijector_checks.TOLERANCE[dtype])
  np.testing.assert_allclose(inverse_log_det, -log_det,
                             **bijector_checks.LOG_DET_TOLERANCE[dtype])
  # TFP sees the condition's batch shape, as a distribution of it does.
  assert bijector.experimental_batch_shape() == [3, 1]
  assert factor_out(shape, dtype).experimental_batch_shape() == []
  distribution = tfp.distributions.TransformedDistribution(
      tfp.distributions.Sample(
          tfp.distributions.Normal(tf.zeros([], dtype), 1.), [16]),
      tfb.Invert(bijector))
  assert distribution.batch_shape == [3, 1]
  assert distribution.log_prob(distribution.sample(seed=[1, 2])).shape == [3, 1]


@pytest.mark.parametrize('condition', [None, [8]])
def test_inverse_of_a_batch_of_unknown_size_broadcasts_only_a_condition(
    condition):
  """Without a condition the two halves share their batch shape, and join
  without the shape arithmetic of a broadcast (a few percent of a served
  decode); with one, its batch shape is broadcast in."""
  if condition is not None:
    condition = tf.random.stateless_normal(condition, [0, 6])
  bijector = factor_out((2, 2, 8), tf.float32, condition=condition)
  inverse = tf.function(bijector.inverse,
                        input_signature=[tf.TensorSpec([None, 32])])
  ops = [op.type for op in inverse.get_concrete_function().graph
         .get_operations()]
  assert ('BroadcastTo' in ops) == (condition is not None)
  z = tf.random.stateless_normal([3, 32], [0, 7])
  np.testing.assert_allclose(inverse(z), bijector.inverse(z), rtol=1e-6,
                             atol=1e-6)


def test_is_the_conditional_gaussian_prior():
  shape = (2, 3, 4)
  bijector = factor_out(shape, tf.float64)
  x = tf.random.stateless_normal((2,) + shape, [0, 1], dtype=tf.float64)
  z, log_det = bijector.forward_and_log_det(x)
  # The factored-out half is normalized by the prior network of the kept half.
  mean, raw = tf.split(bijector.parameters['prior_network'](x[..., :2]), 2,
                       axis=-1)
  log_sigma = 8. * tf.tanh(raw / 8.)
  np.testing.assert_allclose(
      z[:, :12], tf.reshape((x[..., 2:] - mean) / tf.exp(log_sigma), [2, -1]))
  inner_z, inner_log_det = bijectors.forward_and_log_det(bijector.inner,
                                                         x[..., :2])
  np.testing.assert_allclose(z[:, 12:], inner_z)
  np.testing.assert_allclose(
      log_det, inner_log_det - tf.reduce_sum(log_sigma, [1, 2, 3]))
  assert bijector.forward_event_shape([2, 3, 4]) == [24]
  assert bijector.inverse_event_shape([24]) == [2, 3, 4]


def test_prior_scale_is_bounded():
  """However large the prior network's raw log-scale, sigma stays within
  e^-8..e^8: sampling from latents far out in the tails cannot overflow."""
  network = nets.ZeroConv2D(4)
  network.build((None, 2, 2, 2))
  network.bias.assign([0., 0., 1e4, -1e4])  # log_sigma far up, far down.
  bijector = bijectors.FactorOut(network, tfb.Reshape([8], [2, 2, 2]),
                                 (2, 2, 4))
  x = bijector.inverse(tf.fill([1, 16], 1e3))
  factored = x[..., 2:].numpy()
  np.testing.assert_allclose(factored[..., 0], 1e3 * np.exp(8.), rtol=1e-5)
  np.testing.assert_allclose(factored[..., 1], 1e3 * np.exp(-8.), rtol=1e-5)
  # The log-det is -sum(log_sigma): 4 pixels of log-sigmas (8, 0).
  network.bias.assign([0., 0., 1e4, 0.])
  np.testing.assert_allclose(
      bijector.forward_log_det_jacobian(tf.identity(x), event_ndims=3), [-32.],
      atol=1e-3)


def test_bad_input_is_a_clear_error():
  with pytest.raises(ValueError, match='needs an even channel count'):
    bijectors.FactorOut(nets.ZeroConv2D(3), tfb.Identity(), (2, 2, 3))
  bijector = factor_out((2, 2, 4), tf.float32)
  with pytest.raises(ValueError, match=r'built for images of shape \(2, 2, 4\)'):
    bijector.forward(tf.zeros([4, 4, 4]))
  with pytest.raises(ValueError, match='expected latent vectors of size 16'):
    bijector.inverse(tf.zeros([3, 15]))
  with pytest.raises(ValueError, match='expected latent vectors of size 16'):
    bijector.inverse_event_shape([23])
  with pytest.raises(ValueError, match=r'condition must have shape \[\.\.\., 4\]'):
    factor_out((2, 2, 4), tf.float32, condition=tf.zeros([2]))
  with pytest.raises(ValueError, match=r'built for images of shape \(2, 2, 4\)'):
    bijector.forward_event_shape([5, 5, 5])
