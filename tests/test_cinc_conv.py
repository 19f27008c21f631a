"""CIncConv2D: exact log-det and inverse, invertible all through training."""

import itertools
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp import bijectors
from cinc_tfp.bijectors import init
from tests import bijector_checks

tfb = tfp.bijectors
tfd = tfp.distributions

SHAPES = [(4, 4, 2), (3, 5, 3)]


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('shape,kernel_size,corner', list(itertools.product(
    SHAPES, [3, 5], bijectors.CORNERS)) + [((4, 4, 3), 1, 'top_left'),
                                           ((4, 3, 2), 2, 'bottom_right')])
def test_log_det_and_inverse_exact(shape, kernel_size, corner, dtype):
  conv = bijectors.CIncConv2D(**bijector_checks.perturbed(
      init.cinc_conv(shape[-1], kernel_size, seed=1, dtype=dtype), 0.2),
                              corner=corner)
  bijector_checks.check_bijector(conv, shape, dtype)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('corner', bijectors.CORNERS)
def test_volume_preserving_has_zero_log_det(corner, dtype):
  conv = bijectors.CIncConv2D(**bijector_checks.perturbed(init.cinc_conv(
      3, seed=2, dtype=dtype, volume_preserving=True), 0.2), corner=corner)
  assert conv.log_diag is None
  bijector_checks.check_bijector(conv, (4, 4, 3), dtype)
  assert conv.forward_log_det_jacobian(tf.zeros([4, 4, 3], dtype)) == 0.


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('corner', bijectors.CORNERS)
def test_explicit_parameters_and_without_bias(corner, dtype):
  rng = np.random.default_rng(0)
  kernel = tf.Variable(0.1 * rng.normal(size=[3, 3, 4, 4]), dtype=dtype)
  log_diag = tf.Variable(0.3 * rng.normal(size=[4]), dtype=dtype)
  conv = bijectors.CIncConv2D(kernel, log_diag, corner=corner)
  assert conv.bias is None and conv.dtype == dtype
  assert len(conv.trainable_variables) == 2
  bijector_checks.check_bijector(conv, (4, 3, 4), dtype)


def test_initial_parameters_are_seeded_and_near_the_identity():
  parameters = init.cinc_conv(2, seed=4, use_bias=False)
  assert sorted(parameters) == ['kernel', 'log_diag']
  np.testing.assert_array_equal(parameters['kernel'],
                                init.cinc_conv(2, seed=4)['kernel'])
  assert np.max(np.abs(parameters['kernel'] -
                       init.cinc_conv(2, seed=5)['kernel'])) > 0.01
  conv = bijectors.CIncConv2D(**init.variables(parameters))
  assert conv.bias is None and len(conv.trainable_variables) == 2
  x = tf.random.stateless_normal([4, 4, 2], [0, 1])
  assert np.max(np.abs(conv.forward(x) - x)) < 1.


def test_bijectors_with_different_weights_are_not_equal_nor_share_a_cache():
  parameters = init.variables(init.cinc_conv(2, seed=5))
  first = bijectors.CIncConv2D(**parameters)
  second = bijectors.CIncConv2D(
      **init.variables(bijector_checks.perturbed(parameters, 0.5)))
  assert first != second
  x = tf.random.stateless_normal([4, 4, 2], [5, 6])
  first_y = first.forward(x)
  assert np.max(np.abs(second.forward(x) - first_y)) > 0.1
  # A copy shares the weights, as TFP's copies do.
  copy = first.copy()
  assert copy.kernel is first.kernel and copy == first


def test_fast_inverse_agrees_with_raster_reference_and_xla():
  conv = bijectors.CIncConv2D(**bijector_checks.perturbed(
      init.cinc_conv(3, seed=3), 0.2), corner='bottom_left')
  y = tf.random.stateless_normal([2, 6, 5, 3], [1, 2])
  reference = conv.inverse_reference(y)
  np.testing.assert_allclose(conv.inverse(y), reference, rtol=1e-4, atol=1e-4)
  jitted = tf.function(conv.inverse, jit_compile=True)
  np.testing.assert_allclose(jitted(tf.identity(y)), reference, rtol=1e-4,
                             atol=1e-4)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('corner', bijectors.CORNERS)
def test_reversed_output_is_exact_and_folded_into_the_convolution(corner,
                                                                  dtype):
  parameters = bijector_checks.perturbed(
      init.cinc_conv(3, seed=6, dtype=dtype), 0.2)
  conv = bijector_checks.check_reversed_output(
      lambda **reverse: bijectors.CIncConv2D(**parameters, corner=corner,
                                             **reverse), dtype)
  assert conv.reverse_channels and conv.plan_inverse(5).reverse_channels


@pytest.mark.parametrize('reverse_channels', [False, True])
@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_planned_inverse_is_exact_and_only_for_its_own_weights(
    dtype, reverse_channels):
  conv = bijectors.CIncConv2D(**init.variables(bijector_checks.perturbed(
      init.cinc_conv(3, seed=4, dtype=dtype), 0.2)), corner='top_right',
                              reverse_channels=reverse_channels)
  planned = bijectors.CIncConv2D(conv.kernel, conv.log_diag, conv.bias,
                                 corner='top_right',
                                 reverse_channels=reverse_channels,
                                 inverse_plan=conv.plan_inverse(5, 6))
  # The same plan, used unchecked: it shows that the plan is what inverts.
  unchecked = bijectors.CIncConv2D(conv.kernel, conv.log_diag, conv.bias,
                                   corner='top_right',
                                   reverse_channels=reverse_channels,
                                   inverse_plan=planned.plan_inverse(5, 6),
                                   check_plan=False)
  tolerance = bijector_checks.TOLERANCE[dtype]
  inverse = tf.function(planned.inverse)
  images, before = [], []
  for batch in (1, 20):  # One image (by one convolution), then many.
    y = tf.random.stateless_normal([batch, 6, 5, 3], [1, 2], dtype=dtype)
    reference = conv.inverse_reference(y)
    np.testing.assert_allclose(planned.inverse(y), reference, **tolerance)
    np.testing.assert_allclose(inverse(y), reference, **tolerance)
    images.append(y)
    before.append(reference)
  # The variables move on: the checked inverses no longer use the plan, the
  # unchecked one still does (and so gives the old weights' inverse).
  conv.log_diag.assign_add(tf.fill([3], tf.constant(0.3, dtype)))
  for y, old in zip(images, before):
    reference = conv.inverse_reference(tf.identity(y))
    assert np.max(np.abs(reference - old)) > 1e-2
    np.testing.assert_allclose(inverse(y), reference, **tolerance)
    np.testing.assert_allclose(planned.inverse(tf.identity(y)), reference,
                               **tolerance)
    np.testing.assert_allclose(unchecked.inverse(tf.identity(y)), old,
                               **tolerance)


@pytest.mark.parametrize('corner', ['top_left', 'bottom_right'])
def test_empty_batches_keep_their_shape(corner):
  conv = bijectors.CIncConv2D(**init.cinc_conv(3, seed=0), corner=corner)
  bijector_checks.check_empty_batches(conv)
  bijector_checks.check_empty_batches(bijectors.CIncConv2D(
      **init.cinc_conv(3, seed=0), corner=corner,
      inverse_plan=conv.plan_inverse(5)))


def test_learnable_entries_match_the_paper_count():
  channels = 5
  conv = bijectors.CIncConv2D(**init.variables(
      init.cinc_conv(channels, seed=4, use_bias=False)))
  x = tf.random.stateless_normal([2, 4, 4, channels], [0, 1])
  with tf.GradientTape() as tape:
    y = conv.forward(x)
  kernel_grad, log_diag_grad = tape.gradient(
      y, [conv.kernel, conv.log_diag],
      output_gradients=tf.random.stateless_normal(y.shape, [2, 3]))
  # Entries of the diagonal tap on or below the diagonal are masked: 9n^2 -
  # n(n+1)/2 free kernel entries, plus n for the diagonal itself.
  learnable = int(np.count_nonzero(kernel_grad)) + int(
      np.count_nonzero(log_diag_grad))
  assert learnable == 9 * channels**2 - channels * (channels - 1) // 2


def _train(variables, loss_fn, optimizer, steps, seed):
  generator = tf.random.Generator.from_seed(seed)

  @tf.function
  def step():
    x = generator.normal([4, 6, 6, 3])
    with tf.GradientTape() as tape:
      loss = loss_fn(x, generator)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

  for _ in range(steps):
    step()


def test_diagonal_never_reaches_zero_under_an_adversarial_optimizer():
  conv = bijectors.CIncConv2D(**init.variables(init.cinc_conv(3, seed=5)))

  def loss(x, unused_generator):
    # Pull the diagonal towards zero as hard as possible: the raw-weight
    # parametrization of the authors' code would cross zero, a plain exp
    # would head for float32 underflow.
    return tf.reduce_sum(conv.forward_log_det_jacobian(x))

  _train([conv.log_diag], loss, tf.keras.optimizers.SGD(learning_rate=0.5),
         300, seed=6)
  assert np.max(conv.log_diag) < -20  # exp(-20) would be 2e-9
  diagonal = tf.linalg.diag_part(conv.effective_kernel()[2, 2])
  assert np.all(diagonal >= np.exp(-8.) * 0.999), diagonal
  np.testing.assert_allclose(
      conv.forward_log_det_jacobian(tf.zeros([6, 6, 3])),
      36 * np.sum(np.log(diagonal)), rtol=1e-5)


def test_inverse_stays_exact_through_hundreds_of_large_training_steps():
  conv = bijectors.CIncConv2D(**init.variables(init.cinc_conv(3, seed=7)))
  direction = tf.random.stateless_normal([6, 6, 3], [1, 1])

  def loss(x, generator):
    # Maximum likelihood under a standard normal latent, on random data
    # scaled up and down at random, plus a fixed random objective that drags
    # the weights far from where they started.
    x *= tf.exp(generator.normal([]))
    y = conv.forward(x)
    return (0.5 * tf.reduce_mean(tf.reduce_sum(y**2, [1, 2, 3])) -
            conv.forward_log_det_jacobian(x) +
            tf.reduce_mean(tf.reduce_sum(y * direction, [1, 2, 3])))

  # 300 Adam steps of 0.05 (ten times a usual flow learning rate).
  _train(conv.trainable_variables, loss, tf.keras.optimizers.Adam(0.05), 300,
         seed=8)
  moved = tf.reduce_max(tf.abs(conv.kernel -
                               init.cinc_conv(3, seed=7)['kernel']))
  assert moved > 0.1  # the weights really trained
  x = tf.random.stateless_normal([2, 6, 6, 3], [9, 10])
  np.testing.assert_allclose(conv.inverse(tf.identity(conv.forward(x))), x,
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
      conv.inverse(tf.identity(conv.forward(x))), conv.inverse_reference(
          tf.identity(conv.forward(x))), rtol=1e-4, atol=1e-4)


def test_drops_into_chain_and_transformed_distribution():
  conv = bijectors.CIncConv2D(**bijector_checks.perturbed(
      init.cinc_conv(2, seed=8, dtype=tf.float64), 0.2))
  chain = tfb.Chain([tfb.Scale(tf.constant(2., tf.float64)), conv])
  base = tfd.Sample(tfd.Normal(tf.constant(0., tf.float64), 1.), [3, 4, 2])
  flow = tfd.TransformedDistribution(base, chain)
  y = flow.sample(5, seed=[1, 2])
  assert y.shape == [5, 3, 4, 2]
  x = conv.inverse(tf.identity(y) / 2.)
  expected = (base.log_prob(x) - conv.forward_log_det_jacobian(x) -
              24 * np.log(2.))
  np.testing.assert_allclose(flow.log_prob(tf.identity(y)), expected,
                             rtol=1e-10)


def test_bad_input_is_a_clear_error():
  conv = bijectors.CIncConv2D(**init.cinc_conv(3, seed=9),
                              validate_args=True)
  with pytest.raises(ValueError, match=r'expected images of shape \[\.\.\., H, W, C\]'):
    conv.forward(tf.zeros([4, 3]))
  with pytest.raises(ValueError, match='built for 3 channels, got images with 2'):
    conv.forward(tf.zeros([4, 4, 2]))
  with pytest.raises(tf.errors.InvalidArgumentError, match='NaN or infinite'):
    conv.forward(tf.fill([4, 4, 3], np.nan))
  with pytest.raises(ValueError, match='kernel_size must be a positive int'):
    init.cinc_conv(3, kernel_size=0)
  with pytest.raises(ValueError, match='corner must be one of'):
    bijectors.CIncConv2D(**init.cinc_conv(3), corner='center')
  with pytest.raises(ValueError, match='channels must be a positive int'):
    init.cinc_conv(0)
  with pytest.raises(ValueError, match=r'kernel must have shape \[k, k, C, C\]'):
    bijectors.CIncConv2D(tf.zeros([3, 3, 2, 4]))
  with pytest.raises(ValueError, match=r'log_diag must have shape \[3\]'):
    bijectors.CIncConv2D(tf.zeros([3, 3, 3, 3]), tf.zeros([1]))
  with pytest.raises(ValueError, match=r'bias must have shape \[3\]'):
    bijectors.CIncConv2D(tf.zeros([3, 3, 3, 3]), bias=tf.zeros([2]))
  with pytest.raises(ValueError, match=r'kernel must have shape \[k, k, C, C\] '
                     r'with k, C >= 1, got \(0, 0, 3, 3\)'):
    bijectors.CIncConv2D(tf.zeros([0, 0, 3, 3]))
  for dtype in (tf.int32, tf.float16):
    with pytest.raises(ValueError, match='weights must be float32 or float64, '
                       f'got {dtype.name}'):
      bijectors.CIncConv2D(tf.zeros([3, 3, 3, 3], dtype))
  for width in (0, -1, 2.5):
    with pytest.raises(ValueError, match='width must be a positive int'):
      conv.plan_inverse(width)
  with pytest.raises(ValueError, match='height must be a positive int'):
    conv.plan_inverse(4, 0)
  with pytest.raises(ValueError, match='inverse_plan must be an InversePlan'):
    bijectors.CIncConv2D(**init.cinc_conv(3), inverse_plan='plan')
  doubled = bijectors.CIncConv2D(**init.cinc_conv(3, dtype=tf.float64),
                               inverse_plan=conv.plan_inverse(4))
  with pytest.raises(ValueError, match='plan was made from float32 weights; '
                     'these are float64'):
    doubled.inverse(tf.zeros([1, 4, 4, 3], tf.float64))
  for method in (conv.forward, conv.inverse, conv.forward_log_det_jacobian,
                 conv.inverse_log_det_jacobian):
    with pytest.raises(ValueError, match=re.escape(
        'cinc_conv2d: built for float32, got a float64 tensor of shape '
        '(4, 4, 3)')):
      method(tf.zeros([4, 4, 3], tf.float64))
