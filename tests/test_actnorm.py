"""ActNorm: exact log-det and inverse, data-dependent initialization."""

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import bijectors
from cinc_tfp.bijectors import init
from tests import bijector_checks


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('shape', [(4, 4, 2), (3, 5, 3)])
def test_log_det_and_inverse_exact(shape, dtype):
  rng = np.random.default_rng(0)
  actnorm = bijectors.ActNorm(
      tf.constant(rng.normal(size=shape[-1:]), dtype),
      tf.constant(rng.normal(size=shape[-1:]), dtype))
  bijector_checks.check_bijector(actnorm, shape, dtype)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('in_graph', [False, True])
def test_initializes_from_the_first_batch_only(in_graph, dtype):
  actnorm = bijectors.ActNorm(**init.variables(init.actnorm(3, dtype)),
                              initialized=tf.Variable(False))
  rng = np.random.default_rng(1)
  first = tf.constant(3. + 2. * rng.normal(size=[8, 4, 4, 3]), dtype)
  forward = tf.function(actnorm.forward) if in_graph else actnorm.forward
  y = forward(first)
  np.testing.assert_allclose(tf.reduce_mean(y, [0, 1, 2]), 0., atol=1e-5)
  np.testing.assert_allclose(tf.math.reduce_std(y, [0, 1, 2]), 1., rtol=1e-4)
  log_scale = actnorm.log_scale.numpy()
  forward(first * 5. + 1.)
  np.testing.assert_array_equal(actnorm.log_scale, log_scale)
  # Still an exact bijection after initialization.
  bijector_checks.check_bijector(actnorm, (4, 4, 3), dtype)


def test_log_det_before_forward_initializes_too():
  actnorm = bijectors.ActNorm(**init.variables(init.actnorm(2)),
                              initialized=tf.Variable(False))
  x = tf.constant(np.random.default_rng(2).normal(size=[16, 3, 3, 2]) * 4.,
                  tf.float32)
  log_det = actnorm.forward_log_det_jacobian(x)
  np.testing.assert_allclose(log_det, 9. * np.sum(actnorm.log_scale.numpy()))
  assert np.all(actnorm.log_scale.numpy() < -1.)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_batched_parameters_give_each_member_its_own_map(dtype):
  rng = np.random.default_rng(3)
  log_scale, bias = (tf.constant(rng.normal(size=[2, 3]), dtype)
                     for _ in range(2))
  actnorm = bijectors.ActNorm(log_scale, bias)
  xs = tf.constant(rng.normal(size=[2, 2, 3, 3]), dtype)
  ys, log_det = bijectors.forward_and_log_det(actnorm, xs)
  for i in range(2):
    member = bijectors.ActNorm(log_scale[i], bias[i])
    np.testing.assert_allclose(ys[i], member.forward(xs[i]))
    np.testing.assert_allclose(log_det[i], member.forward_log_det_jacobian(
        xs[i]))
  # The two members together, as one map of the whole batch.
  np.testing.assert_allclose(
      tf.reduce_sum(log_det),
      bijector_checks.brute_force_log_det(actnorm.forward, tf.identity(xs)),
      **bijector_checks.LOG_DET_TOLERANCE[dtype])
  np.testing.assert_allclose(actnorm.inverse(tf.identity(ys)), xs,
                             **bijector_checks.TOLERANCE[dtype])
  # Images broadcast against the parameters' batch: [2, 1] x [4] -> [2, 4].
  wide = bijectors.ActNorm(log_scale[:, None], bias[:, None])
  xs = tf.constant(rng.normal(size=[4, 2, 3, 3]), dtype)
  ys, log_det = bijectors.forward_and_log_det(wide, xs)
  assert ys.shape == [2, 4, 2, 3, 3] and log_det.shape == [2, 1]
  np.testing.assert_allclose(ys[1], bijectors.ActNorm(log_scale[1], bias[1])
                             .forward(xs))


def test_bad_input_is_a_clear_error():
  actnorm = bijectors.ActNorm(**init.actnorm(3), validate_args=True)
  with pytest.raises(ValueError, match='built for 3 channels, got images with 1'):
    actnorm.forward(tf.zeros([2, 2, 1]))
  with pytest.raises(tf.errors.InvalidArgumentError, match='NaN or infinite'):
    actnorm.inverse(tf.fill([2, 2, 3], np.nan))
  with pytest.raises(ValueError, match='built for float32, got a float64'):
    actnorm.inverse(tf.zeros([2, 2, 3], tf.float64))
  with pytest.raises(ValueError, match=r'must both have shape \[\.\.\., C\]'):
    bijectors.ActNorm(tf.zeros([3]), tf.zeros([2]))
  with pytest.raises(ValueError, match='initialization needs log_scale'):
    bijectors.ActNorm(tf.Variable(tf.zeros([2, 3])),
                      tf.Variable(tf.zeros([2, 3])),
                      initialized=tf.Variable(False))
  with pytest.raises(ValueError, match='both must be tf.Variables'):
    bijectors.ActNorm(**init.actnorm(3), initialized=tf.Variable(False))
