"""Conv1x1: exact log-det and inverse of the LU-parametrized 1x1 convolution."""

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import bijectors
from cinc_tfp.bijectors import init
from tests import bijector_checks


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('shape', [(4, 4, 2), (3, 5, 3), (2, 2, 8)])
def test_log_det_and_inverse_exact(shape, dtype):
  conv = bijectors.Conv1x1(**bijector_checks.perturbed(
      init.conv1x1(shape[-1], seed=1, dtype=dtype), 0.2))
  bijector_checks.check_bijector(conv, shape, dtype)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_reversed_output_is_exact(dtype):
  parameters = bijector_checks.perturbed(
      init.conv1x1(3, seed=3, dtype=dtype), 0.2)
  bijector_checks.check_reversed_output(
      lambda **reverse: bijectors.Conv1x1(**parameters, **reverse), dtype)


def test_starts_as_a_rotation_from_the_seed():
  conv = bijectors.Conv1x1(**init.conv1x1(4, seed=2, dtype=tf.float64))
  matrix = conv.matrix()
  np.testing.assert_allclose(tf.matmul(matrix, matrix, transpose_a=True),
                             np.eye(4), atol=1e-12)
  np.testing.assert_allclose(conv.forward_log_det_jacobian(
      tf.zeros([3, 3, 4], tf.float64)), 0., atol=1e-12)
  again = bijectors.Conv1x1(
      **init.conv1x1(4, seed=2, dtype=tf.float64)).matrix()
  np.testing.assert_array_equal(matrix, again)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_explicit_parameters(dtype):
  rng = np.random.default_rng(0)
  lower_upper, log_scale = rng.normal(size=[3, 3]), rng.normal(size=[3])
  sign, permutation = np.array([1., -1., 1.]), [2, 0, 1]
  conv = bijectors.Conv1x1(
      tf.constant(lower_upper, dtype), tf.constant(log_scale, dtype),
      sign=sign, permutation=permutation)
  bijector_checks.check_bijector(conv, (2, 3, 3), dtype)
  # W = P L U in NumPy: L unit lower, U upper with sign * exp(log_scale) on
  # its diagonal; row permutation[i] of W is row i of L U.
  lower = np.tril(lower_upper, -1) + np.eye(3)
  upper = np.triu(lower_upper, 1) + np.diag(sign * np.exp(log_scale))
  expected = np.empty([3, 3])
  expected[permutation] = lower @ upper
  np.testing.assert_allclose(conv.matrix(), expected,
                             **bijector_checks.TOLERANCE[dtype])


def test_bad_input_is_a_clear_error():
  conv = bijectors.Conv1x1(**init.conv1x1(3, seed=3), validate_args=True)
  with pytest.raises(ValueError, match='built for 3 channels, got images with 4'):
    conv.forward(tf.zeros([2, 2, 4]))
  with pytest.raises(ValueError, match='expected images'):
    conv.inverse(tf.zeros([2, 3]))
  with pytest.raises(tf.errors.InvalidArgumentError, match='NaN or infinite'):
    conv.forward(tf.fill([2, 2, 3], np.nan))
  with pytest.raises(ValueError, match=r'lower_upper must have shape \[C, C\]'):
    bijectors.Conv1x1(tf.zeros([3, 2]), tf.zeros([2]))
  with pytest.raises(ValueError, match=r'with C >= 1, got \(0, 0\)'):
    bijectors.Conv1x1(tf.zeros([0, 0]), tf.zeros([0]))
  with pytest.raises(ValueError, match='weights must be float32 or float64'):
    bijectors.Conv1x1(tf.zeros([3, 3], tf.float16), tf.zeros([3], tf.float16))
  with pytest.raises(ValueError, match=r'log_scale must have shape \[3\]'):
    bijectors.Conv1x1(tf.zeros([3, 3]), tf.zeros([1]))
  with pytest.raises(ValueError, match='sign must hold only'):
    bijectors.Conv1x1(tf.zeros([3, 3]), tf.zeros([3]), sign=[1., 2., 1.])
  with pytest.raises(ValueError, match='permutation must be a permutation'):
    bijectors.Conv1x1(tf.zeros([3, 3]), tf.zeros([3]), permutation=[0, 0, 1])
