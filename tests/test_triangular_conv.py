"""Corner-padded convolutions: the characterization theorem and the solvers."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp.bijectors import init
from cinc_tfp.bijectors import triangular_conv
from tests import bijector_checks

# An odd number of pixels, so that det(tap)^(H W) keeps the tap's sign.
HEIGHT, WIDTH = 3, 5


def padded_conv_matrix(kernel, corner):
  """Dense `[HWC, HWC]` matrix of the padded convolution with `kernel`."""
  channels = kernel.shape[-1]
  x = tf.zeros([1, HEIGHT, WIDTH, channels], kernel.dtype)
  return bijector_checks.dense_jacobian(
      lambda x: triangular_conv.causal_conv2d(x, kernel, corner), x)


def with_diagonal_tap(kernel, tap, corner):
  a, b = triangular_conv.diagonal_tap(kernel.shape[0], corner)
  return tf.tensor_scatter_nd_update(kernel, [[a, b]], tap[tf.newaxis])


@pytest.mark.parametrize('corner', triangular_conv.CORNERS)
@pytest.mark.parametrize('kernel_size', [2, 3, 5])
def test_one_channel_invertible_iff_diagonal_tap_nonzero(corner, kernel_size):
  rng = np.random.default_rng(0)
  kernel = tf.constant(rng.normal(size=[kernel_size, kernel_size, 1, 1]))
  for tap in (0.7, -1.3):
    matrix = padded_conv_matrix(
        with_diagonal_tap(kernel, tf.constant([[tap]], tf.float64), corner),
        corner)
    np.testing.assert_allclose(tf.linalg.det(matrix), tap**(HEIGHT * WIDTH),
                               rtol=1e-9)
  singular = padded_conv_matrix(
      with_diagonal_tap(kernel, tf.zeros([1, 1], tf.float64), corner), corner)
  assert np.linalg.matrix_rank(singular.numpy()) < HEIGHT * WIDTH
  assert tf.linalg.det(singular) == 0.


@pytest.mark.parametrize('corner', triangular_conv.CORNERS)
def test_many_channels_invertible_iff_det_of_diagonal_tap_nonzero(corner):
  rng = np.random.default_rng(1)
  channels = 3
  kernel = tf.constant(rng.normal(size=[3, 3, channels, channels]))
  # A full (not triangular) tap with non-zero determinant: invertible, and
  # det M = det(tap)^(HW).
  tap = rng.normal(size=[channels, channels])
  tap[0] *= -np.sign(np.linalg.det(tap))  # A negative determinant.
  tap = tf.constant(tap)
  matrix = padded_conv_matrix(with_diagonal_tap(kernel, tap, corner), corner)
  sign, log_det = tf.linalg.slogdet(matrix)
  tap_sign, tap_log_det = tf.linalg.slogdet(tap)
  assert tap_sign == -1 and sign == -1
  np.testing.assert_allclose(log_det, HEIGHT * WIDTH * tap_log_det, rtol=1e-9)
  # A rank-deficient tap (third row = first + second): singular.
  rows = rng.normal(size=[2, channels])
  singular_tap = tf.constant(np.concatenate([rows, rows.sum(0, keepdims=True)]))
  singular = padded_conv_matrix(with_diagonal_tap(kernel, singular_tap, corner),
                                corner)
  size = HEIGHT * WIDTH * channels
  assert np.linalg.matrix_rank(singular.numpy()) < size


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('kernel_size,corner', list(
    itertools.product([1, 2, 3, 5], triangular_conv.CORNERS)))
# (6, 7): rows wider than the kernel; (3, 2): narrower than most kernels.
@pytest.mark.parametrize('height,width', [(6, 7), (3, 2)])
def test_row_solver_matches_raster_reference(kernel_size, corner, dtype,
                                              height, width):
  rng = np.random.default_rng(kernel_size)
  channels = 3
  kernel = triangular_conv.triangular_kernel(
      tf.constant(0.2 * rng.normal(size=[kernel_size] * 2 + [channels] * 2),
                  dtype),
      tf.exp(tf.constant(0.3 * rng.normal(size=[channels]), dtype)), corner)
  x = tf.constant(rng.normal(size=[2, height, width, channels]), dtype)
  y = triangular_conv.causal_conv2d(x, kernel, corner)
  fast = triangular_conv.solve_rows(y, kernel, corner)
  reference = triangular_conv.solve_raster(y, kernel, corner)
  tolerance = bijector_checks.TOLERANCE[dtype]
  np.testing.assert_allclose(fast, reference, **tolerance)
  np.testing.assert_allclose(fast, x, **tolerance)
  # With a plan; and for one image, solved with a zero image appended.
  plan = triangular_conv.inverse_plan(kernel, width, corner)
  np.testing.assert_allclose(_solve_with_plan(y, kernel, corner, plan),
                             reference, **tolerance)
  np.testing.assert_allclose(triangular_conv.solve_rows(y[1:], kernel, corner),
                             reference[1:], **tolerance)
  np.testing.assert_allclose(_solve_with_plan(y[:1], kernel, corner, plan),
                             reference[:1], **tolerance)
  # The inverse as one convolution, and a plan of the image's height that
  # inverts one image with it.
  inverse = triangular_conv.inverse_kernel(kernel, height, width, corner)
  assert inverse.shape == (height, width, channels, channels)
  np.testing.assert_allclose(triangular_conv.causal_conv2d(y, inverse, corner),
                             reference, **tolerance)
  plan = triangular_conv.inverse_plan(kernel, width, corner, height=height)
  np.testing.assert_allclose(plan.one_image, inverse, **tolerance)
  np.testing.assert_allclose(_solve_with_plan(y[:1], kernel, corner, plan),
                             reference[:1], **tolerance)


def _solve_with_plan(y, kernel, corner, plan):
  """`solve_with_plan` keyed on the kernel itself."""
  return triangular_conv.solve_with_plan(y, plan, [kernel], lambda k: k,
                                         corner)


def _random_kernel(rng, size, channels, corner, dtype=tf.float32, scale=0.2):
  return triangular_conv.triangular_kernel(
      tf.constant(scale * rng.normal(size=[size, size, channels, channels]),
                  dtype),
      tf.exp(tf.constant(0.3 * rng.normal(size=[channels]), dtype)), corner)


@pytest.mark.parametrize('jit', [False, True])
def test_planned_solve_with_unknown_batch_in_a_function(jit):
  rng = np.random.default_rng(4)
  kernel = _random_kernel(rng, 3, 4, 'top_right')
  plan = triangular_conv.inverse_plan(kernel, 8, 'top_right')
  solve = tf.function(
      lambda y: _solve_with_plan(y, kernel, 'top_right', plan),
      jit_compile=jit,
      input_signature=[tf.TensorSpec([None, 7, 8, 4], tf.float32)])
  for batch in (1, 3):
    x = tf.constant(rng.normal(size=[batch, 7, 8, 4]), tf.float32)
    y = triangular_conv.causal_conv2d(x, kernel, 'top_right')
    np.testing.assert_allclose(
        solve(y), triangular_conv.solve_raster(y, kernel, 'top_right'),
        rtol=1e-4, atol=1e-4)


def test_one_image_is_inverted_by_one_convolution():
  rng = np.random.default_rng(6)
  kernel = _random_kernel(rng, 3, 4, 'bottom_right')
  plan = triangular_conv.inverse_plan(kernel, 8, 'bottom_right', height=7)
  def op_types(batch):
    solve = tf.function(lambda y: triangular_conv.solve_with_plan(
        y, plan, [kernel], lambda k: k, 'bottom_right', check=False))
    graph = solve.get_concrete_function(
        tf.TensorSpec([batch, 7, 8, 4])).graph
    return {op.type for op in graph.get_operations()}
  assert 'Conv2D' in op_types(1) and 'MatMul' not in op_types(1)
  assert 'Conv2D' not in op_types(2) and 'MatMul' in op_types(2)
  # Too large an image for one convolution: no inverse kernel.
  assert triangular_conv.inverse_plan(kernel, 16, height=17).one_image is None


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('corner', triangular_conv.CORNERS)
def test_one_convolution_inverts_the_largest_one_image_size(corner, dtype):
  """One image of `ONE_CONV_MAX_PIXELS` pixels (16x16x12: a default flow's
  first level), kernel at the flows' initial scale: the planned solve takes
  one convolution of `H W` taps and inverts the image to the tolerance
  every solver meets."""
  rng = np.random.default_rng(7)
  side, channels = 16, 12
  assert side * side == triangular_conv.ONE_CONV_MAX_PIXELS
  kernel = _random_kernel(rng, 3, channels, corner, dtype,
                          scale=init.KERNEL_STDDEV)
  x = tf.constant(rng.normal(size=[1, side, side, channels]), dtype)
  y = triangular_conv.causal_conv2d(x, kernel, corner)
  plan = triangular_conv.inverse_plan(kernel, side, corner, height=side)
  assert plan.one_image_fits((side, side, channels))
  np.testing.assert_allclose(_solve_with_plan(y, kernel, corner, plan), x,
                             **bijector_checks.TOLERANCE[dtype])


def test_plans_of_float32_kernels_are_computed_in_float64():
  # Made in float32, the matrices differ from these by ~6e-7 of their size.
  kernel = triangular_conv.triangular_kernel(
      tf.random.stateless_normal([3, 3, 12, 12], [4, 5], stddev=0.2),
      tf.exp(tf.random.stateless_normal([12], [6, 7], stddev=0.2)),
      'top_left')
  plan = triangular_conv.inverse_plan(kernel, 16)
  wide = tf.cast(triangular_conv.row_matrices(tf.cast(kernel, tf.float64), 16),
                 tf.float32)
  np.testing.assert_allclose(plan.rows, wide, rtol=0,
                             atol=1e-8 * float(tf.reduce_max(tf.abs(wide))))


def test_a_plan_of_other_weights_is_never_used():
  rng = np.random.default_rng(5)
  kernel = _random_kernel(rng, 3, 2, 'bottom_left', tf.float64)
  other = _random_kernel(rng, 3, 2, 'bottom_left', tf.float64)
  stale = triangular_conv.inverse_plan(other, 5, 'bottom_left')
  x = tf.constant(rng.normal(size=[2, 4, 5, 2]))
  y = triangular_conv.causal_conv2d(x, kernel, 'bottom_left')
  solve = tf.function(
      lambda y, kernel: _solve_with_plan(y, kernel, 'bottom_left', stale))
  for result in (solve(y, kernel),
                 _solve_with_plan(y, kernel, 'bottom_left', stale)):
    np.testing.assert_allclose(result, x, rtol=1e-10, atol=1e-10)
  # A plan for another width, kernel size or corner does not fit: not used
  # either (the last of the same weights).
  for misfit in [
      triangular_conv.inverse_plan(
          _random_kernel(rng, size, 2, 'bottom_left', tf.float64), width,
          'bottom_left') for size, width in ((3, 4), (5, 5))
  ] + [triangular_conv.inverse_plan(kernel, 5, 'top_left')]:
    np.testing.assert_allclose(
        _solve_with_plan(y, kernel, 'bottom_left', misfit), x, rtol=1e-10,
        atol=1e-10)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('corner', triangular_conv.CORNERS)
def test_plan_for_reversed_channels_solves_them_and_only_them(corner, dtype):
  rng = np.random.default_rng(8)
  kernel = _random_kernel(rng, 3, 3, corner, dtype)
  x = tf.constant(rng.normal(size=[3, 5, 4, 3]), dtype)
  y = triangular_conv.causal_conv2d(x, kernel, corner)
  reversed_y = y[..., ::-1]
  tolerance = bijector_checks.TOLERANCE[dtype]
  solve = lambda y, plan, reverse: triangular_conv.solve_with_plan(  # pylint: disable=g-long-lambda
      y, plan, [kernel], lambda k: k, corner, reverse_channels=reverse)
  reversed_plan = triangular_conv.inverse_plan(kernel, 4, corner, height=5,
                                               reverse_channels=True)
  plain_plan = triangular_conv.inverse_plan(kernel, 4, corner, height=5)
  assert reversed_plan.reverse_channels and not plain_plan.reverse_channels
  # Many images by rows, one by the one-image kernel.
  for images in (slice(None), slice(0, 1)):
    np.testing.assert_allclose(solve(reversed_y[images], reversed_plan, True),
                               x[images], **tolerance)
  # A plan for the other order does not fit, so it is not used.
  assert not plain_plan.fits([kernel], (5, 4, 3), corner, True)
  assert not reversed_plan.fits([kernel], (5, 4, 3), corner, False)
  np.testing.assert_allclose(solve(reversed_y, plain_plan, True), x,
                             **tolerance)
  np.testing.assert_allclose(solve(y, reversed_plan, False), x, **tolerance)


def test_unchecked_plan_is_trusted_with_the_plain_gradients():
  # check=False skips the comparison: a stale plan then gives its own
  # kernel's inverse (what a caller that compared the weights itself must
  # prevent), and the gradients still are the plain solve's.
  rng = np.random.default_rng(7)
  kernel = _random_kernel(rng, 3, 2, 'top_right', tf.float64)
  other = _random_kernel(rng, 3, 2, 'top_right', tf.float64)
  x = tf.constant(rng.normal(size=[2, 4, 5, 2]))
  y = triangular_conv.causal_conv2d(x, kernel, 'top_right')
  unchecked = lambda y, kernel, plan: triangular_conv.solve_with_plan(  # pylint: disable=g-long-lambda
      y, plan, [kernel], lambda k: k, 'top_right', check=False)
  np.testing.assert_allclose(
      unchecked(y, kernel, triangular_conv.inverse_plan(other, 5, 'top_right')),
      triangular_conv.solve_rows(y, other, 'top_right'), rtol=1e-10)
  plan = triangular_conv.inverse_plan(kernel, 5, 'top_right')
  for solve in (unchecked, tf.function(unchecked)):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch([y, kernel])
      planned = tf.reduce_sum(solve(y, kernel, plan)**3)
      plain = tf.reduce_sum(
          triangular_conv.solve_rows(y, kernel, 'top_right')**3)
    for a, b in zip(tape.gradient(planned, [y, kernel]),
                    tape.gradient(plain, [y, kernel])):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# With the reversal, two corners: top-left, and bottom-right, whose rows and
# pixels both run in reverse order.
@pytest.mark.parametrize('mode,corner,reverse_channels', [
    *itertools.product(['eager', 'function', 'xla'], triangular_conv.CORNERS,
                       [False]),
    *itertools.product(['function', 'xla'], ['top_left', 'bottom_right'],
                       [True])])
@pytest.mark.parametrize('batch', [1, 2])  # 1: by the one-image kernel.
def test_planned_solve_has_the_gradients_of_the_plain_solve(
    corner, batch, mode, reverse_channels):
  # The plan is made eagerly and used in a graph, as a layer's plans are.
  rng = np.random.default_rng(6)
  kernel = _random_kernel(rng, 3, 3, corner, tf.float64)
  plan = triangular_conv.inverse_plan(kernel, 4, corner, height=5,
                                      reverse_channels=reverse_channels)
  y = tf.constant(rng.normal(size=[batch, 5, 4, 3]))
  weights = tf.constant(rng.normal(size=[batch, 5, 4, 3]))

  def gradients(planned):  # The plan captured, as a layer's bijector holds it.
    with tf.GradientTape() as tape:
      tape.watch([y, kernel])
      if planned:
        x = triangular_conv.solve_with_plan(
            y, plan, [kernel], lambda k: k, corner,
            reverse_channels=reverse_channels)
      else:
        x = triangular_conv.solve_rows(
            y[..., ::-1] if reverse_channels else y, kernel, corner)
      loss = tf.reduce_sum(weights * x**2)
    return tape.gradient(loss, [y, kernel])

  if mode != 'eager':
    gradients = tf.function(gradients, jit_compile=mode == 'xla')
  for planned, plain in zip(gradients(True), gradients(False)):
    np.testing.assert_allclose(planned, plain, rtol=1e-10, atol=1e-12)


def test_row_solver_runs_under_xla_and_with_unknown_batch():
  rng = np.random.default_rng(3)
  kernel = triangular_conv.triangular_kernel(
      tf.constant(0.2 * rng.normal(size=[3, 3, 4, 4]), tf.float32),
      tf.ones([4]), 'bottom_right')
  solve = tf.function(
      lambda y: triangular_conv.solve_rows(y, kernel, 'bottom_right'),
      jit_compile=True,
      input_signature=[tf.TensorSpec([None, 8, 8, 4], tf.float32)])
  x = tf.constant(rng.normal(size=[5, 8, 8, 4]), tf.float32)
  y = triangular_conv.causal_conv2d(x, kernel, 'bottom_right')
  np.testing.assert_allclose(solve(y), x, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
      solve(y), triangular_conv.solve_raster(y, kernel, 'bottom_right'),
      rtol=1e-4, atol=1e-4)


def _op_types(function, shape):
  graph = tf.function(function).get_concrete_function(
      tf.TensorSpec(shape, tf.float32)).graph
  return [op.type for op in graph.get_operations()]


def test_only_a_batch_known_to_hold_one_image_gets_a_zero_image_appended():
  """One image is solved as two (the faster matmul); a batch of unknown size
  as it comes, with no shape computed: a flow pins one image to a known
  size before it inverts."""
  rng = np.random.default_rng(5)
  kernel = _random_kernel(rng, 3, 4, 'top_left')
  matrices = triangular_conv.row_matrices(kernel, 6)
  solve = lambda y: triangular_conv._solve_by_rows(y, matrices, 'top_left')  # pylint: disable=protected-access
  one, unknown = _op_types(solve, [1, 5, 6, 4]), _op_types(solve, [None, 5, 6, 4])
  assert one.count('Pad') == 1
  assert 'Pad' not in unknown and 'Shape' not in unknown, unknown
  for batch in (1, 2):
    x = tf.constant(rng.normal(size=[batch, 5, 6, 4]), tf.float32)
    y = triangular_conv.causal_conv2d(x, kernel, 'top_left')
    np.testing.assert_allclose(
        tf.function(solve, input_signature=[
            tf.TensorSpec([None, 5, 6, 4], tf.float32)])(y), x,
        rtol=1e-4, atol=1e-4)


def test_unknown_corner_is_a_clear_error():
  with pytest.raises(ValueError, match='corner must be one of'):
    triangular_conv.causal_conv2d(tf.zeros([1, 4, 4, 1]), tf.ones([3, 3, 1, 1]),
                                  'middle')
