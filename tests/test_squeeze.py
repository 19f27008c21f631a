"""Squeeze: an exact permutation with shape bookkeeping."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp import bijectors
from tests import bijector_checks


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('shape', [(2, 2, 1), (4, 6, 3)])
def test_log_det_and_inverse_exact(shape, dtype):
  squeeze = bijectors.Squeeze()
  x = tf.random.stateless_normal(shape, [0, 1], dtype=dtype)
  jacobian = bijector_checks.dense_jacobian(squeeze.forward, x).numpy()
  # A permutation matrix: one 1 in every row and column.
  assert np.all(np.sort(jacobian, axis=None)[-jacobian.shape[0]:] == 1.)
  np.testing.assert_array_equal(np.abs(jacobian).sum(0), 1.)
  np.testing.assert_array_equal(np.abs(jacobian).sum(1), 1.)
  assert squeeze.forward_log_det_jacobian(x) == 0.
  assert squeeze.inverse_log_det_jacobian(tf.identity(squeeze.forward(x))) == 0.
  xs = tf.random.stateless_normal((3,) + shape, [2, 3], dtype=dtype)
  np.testing.assert_array_equal(squeeze.inverse(tf.identity(squeeze.forward(xs))),
                                xs)


def test_shapes():
  squeeze = bijectors.Squeeze()
  x = tf.reshape(tf.range(2 * 4 * 4 * 3, dtype=tf.float32), [2, 4, 4, 3])
  y = squeeze.forward(x)
  assert y.shape == [2, 2, 2, 12]
  assert squeeze.forward_event_shape([4, 4, 3]) == [2, 2, 12]
  assert squeeze.inverse_event_shape([2, 2, 12]) == [4, 4, 3]
  np.testing.assert_array_equal(squeeze.forward_event_shape_tensor([4, 6, 3]),
                                [2, 3, 12])
  # The first output pixel holds the top-left 2x2 block's four pixels.
  np.testing.assert_array_equal(
      y[0, 0, 0], tf.reshape(x[0, :2, :2], [-1]))
  # Unknown rank stays unknown, as TFP's own bijectors do.
  assert squeeze.forward_event_shape(tf.TensorShape(None)).rank is None
  assert squeeze.inverse_event_shape(tf.TensorShape(None)).rank is None


def test_event_shape_known_only_in_the_graph():
  distribution = lambda shape: tfp.distributions.TransformedDistribution(
      tfp.distributions.Sample(tfp.distributions.Normal(0., 1.), shape),
      bijectors.Squeeze())

  @tf.function(input_signature=[tf.TensorSpec(None, tf.int32),
                                tf.TensorSpec([2, 2, 4])])
  def event_shape_and_log_prob(shape, y):
    squeezed = distribution(shape)
    return squeezed.event_shape_tensor(), squeezed.log_prob(y)

  y = tf.random.stateless_normal([2, 2, 4], [0, 4])
  shape, log_prob = event_shape_and_log_prob(tf.constant([4, 4, 1]), y)
  np.testing.assert_array_equal(shape, [2, 2, 4])
  np.testing.assert_allclose(log_prob,
                             distribution([4, 4, 1]).log_prob(y), rtol=1e-6)


def test_bad_input_is_a_clear_error():
  squeeze = bijectors.Squeeze(validate_args=True)
  with pytest.raises(ValueError, match='height and width must be even'):
    squeeze.forward(tf.zeros([3, 4, 1]))
  with pytest.raises(ValueError, match='height and width must be even'):
    squeeze.forward_event_shape([4, 5, 1])
  with pytest.raises(ValueError, match='channel count divisible by 4'):
    squeeze.inverse(tf.zeros([2, 2, 3]))
  with pytest.raises(ValueError, match='expected images'):
    squeeze.forward(tf.zeros([4, 4]))
  with pytest.raises(ValueError, match='expected images'):
    squeeze.inverse(tf.zeros([4, 4]))
  with pytest.raises(ValueError, match='expected images'):
    squeeze.forward_event_shape([4, 4])
  with pytest.raises(ValueError, match='expected images'):
    squeeze.inverse_event_shape([4])
  with pytest.raises(tf.errors.InvalidArgumentError, match='NaN or infinite'):
    squeeze.forward(tf.fill([2, 2, 1], np.nan))
