"""EmergingConv2D: exact log-det and inverse; its 3x3 receptive field."""

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import bijectors
from cinc_tfp.bijectors import init
from tests import bijector_checks


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('shape', [(4, 4, 2), (3, 5, 3), (5, 4, 1)])
def test_log_det_and_inverse_exact(shape, dtype):
  conv = bijectors.EmergingConv2D(**bijector_checks.perturbed(
      init.emerging_conv(shape[-1], seed=1, dtype=dtype), 0.2))
  bijector_checks.check_bijector(conv, shape, dtype)


def test_receptive_field_is_the_full_3x3_neighbourhood():
  conv = bijectors.EmergingConv2D(**bijector_checks.perturbed(
      init.emerging_conv(1, seed=2, dtype=tf.float64), 0.5))
  jacobian = bijector_checks.dense_jacobian(
      conv.forward, tf.zeros([5, 5, 1], tf.float64)).numpy()
  centre = 2 * 5 + 2
  reads = np.nonzero(jacobian[centre])[0]
  assert sorted(reads) == sorted(
      i * 5 + j for i in (1, 2, 3) for j in (1, 2, 3))


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_explicit_kernels_with_unit_diagonal(dtype):
  rng = np.random.default_rng(0)
  kernel_a, kernel_b = (tf.constant(0.2 * rng.normal(size=[2, 2, 3, 3]), dtype)
                        for _ in range(2))
  conv = bijectors.EmergingConv2D(kernel_a, kernel_b)
  assert conv.forward_log_det_jacobian(tf.zeros([4, 4, 3], dtype)) == 0.
  bijector_checks.check_bijector(conv, (4, 4, 3), dtype)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_without_bias_and_made_of_two_corner_convolutions(dtype):
  parameters = init.variables(bijector_checks.perturbed(
      init.emerging_conv(3, seed=4, dtype=dtype, use_bias=False), 0.2))
  conv = bijectors.EmergingConv2D(**parameters)
  assert conv.bias is None and len(conv.trainable_variables) == 3
  bijector_checks.check_bijector(conv, (4, 4, 3), dtype)
  first, second = (bijectors.CIncConv2D(parameters['kernel_a'],
                                        parameters['log_diag']),
                   bijectors.CIncConv2D(parameters['kernel_b'],
                                        corner='bottom_right'))
  x = tf.random.stateless_normal([2, 4, 5, 3], [0, 1], dtype=dtype)
  np.testing.assert_array_equal(conv.forward(x),
                                second.forward(first.forward(x)))
  assert [factor.corner for factor in conv.factors] == ['top_left',
                                                        'bottom_right']


def test_inverse_under_xla():
  conv = bijectors.EmergingConv2D(**bijector_checks.perturbed(
      init.emerging_conv(4, seed=3), 0.2))
  x = tf.random.stateless_normal([2, 6, 6, 4], [0, 1])
  jitted = tf.function(conv.inverse, jit_compile=True)
  np.testing.assert_allclose(jitted(tf.identity(conv.forward(x))), x,
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_raster_reference_inverts_and_agrees_with_fast_inverse(dtype):
  conv = bijectors.EmergingConv2D(**bijector_checks.perturbed(
      init.emerging_conv(3, seed=5, dtype=dtype), 0.3))
  x = tf.random.stateless_normal([2, 5, 6, 3], [2, 3], dtype=dtype)
  y = conv.forward(x)
  tolerance = 1e-4 if dtype == tf.float32 else 1e-10
  reference = conv.inverse_reference(y)
  np.testing.assert_allclose(reference, x, rtol=tolerance, atol=tolerance)
  np.testing.assert_allclose(conv.inverse(tf.identity(y)), reference,
                             rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_reversed_output_is_exact(dtype):
  parameters = bijector_checks.perturbed(
      init.emerging_conv(3, seed=5, dtype=dtype), 0.2)
  bijector_checks.check_reversed_output(
      lambda **reverse: bijectors.EmergingConv2D(**parameters, **reverse),
      dtype)


def test_empty_batches_keep_their_shape():
  bijector_checks.check_empty_batches(
      bijectors.EmergingConv2D(**init.emerging_conv(3, seed=0)))


@pytest.mark.parametrize('reverse_channels', [False, True])
@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_planned_inverse_is_exact_and_only_for_its_own_weights(
    dtype, reverse_channels):
  conv = bijectors.EmergingConv2D(**init.variables(bijector_checks.perturbed(
      init.emerging_conv(3, seed=4, dtype=dtype), 0.2)),
                                  reverse_channels=reverse_channels)
  planned = bijectors.EmergingConv2D(
      conv.kernel_a, conv.kernel_b, conv.log_diag, conv.bias,
      reverse_channels=reverse_channels,
      inverse_plan=conv.plan_inverse(5, 6))
  # The same plans, used unchecked: they show that each factor's plan is
  # what inverts it.
  unchecked = bijectors.EmergingConv2D(
      conv.kernel_a, conv.kernel_b, conv.log_diag, conv.bias,
      reverse_channels=reverse_channels,
      inverse_plan=conv.plan_inverse(5, 6), check_plan=False)
  tolerance = bijector_checks.TOLERANCE[dtype]
  inverse = tf.function(planned.inverse)
  for batch in (1, 20):  # One image (by one convolution), then many.
    y = tf.random.stateless_normal([batch, 6, 5, 3], [1, 2], dtype=dtype)
    reference = conv.inverse_reference(y)
    np.testing.assert_allclose(planned.inverse(y), reference, **tolerance)
    np.testing.assert_allclose(inverse(y), reference, **tolerance)
  old = reference
  # Either factor's weights move on: the traced inverse stops using its plan;
  # the unchecked one still uses both (the old weights' inverse).
  for variable in (conv.kernel_b, conv.log_diag):
    variable.assign_add(0.1 * tf.ones_like(variable))
    reference = conv.inverse_reference(tf.identity(y))
    assert np.max(np.abs(reference - old)) > 1e-2
    np.testing.assert_allclose(inverse(y), reference, **tolerance)
    np.testing.assert_allclose(unchecked.inverse(tf.identity(y)), old,
                               **tolerance)


def test_bad_input_is_a_clear_error():
  conv = bijectors.EmergingConv2D(**init.emerging_conv(3, seed=4),
                                  validate_args=True)
  with pytest.raises(ValueError, match='built for 3 channels'):
    conv.inverse(tf.zeros([2, 4, 4, 5]))
  with pytest.raises(ValueError, match='expected images'):
    conv.forward(tf.zeros([3]))
  with pytest.raises(tf.errors.InvalidArgumentError, match='NaN or infinite'):
    conv.inverse(tf.fill([4, 4, 3], np.inf))
  with pytest.raises(ValueError, match=r'kernels must have shape \[2, 2, C, C\]'):
    bijectors.EmergingConv2D(tf.zeros([3, 3, 2, 2]), tf.zeros([3, 3, 2, 2]))
  with pytest.raises(ValueError, match='the same number of channels'):
    bijectors.EmergingConv2D(tf.zeros([2, 2, 2, 2]), tf.zeros([2, 2, 3, 3]))
  with pytest.raises(ValueError, match=r'log_diag must have shape \[2\]'):
    bijectors.EmergingConv2D(tf.zeros([2, 2, 2, 2]), tf.zeros([2, 2, 2, 2]),
                             tf.zeros([1]))
