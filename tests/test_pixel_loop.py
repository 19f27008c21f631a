"""The compiled pixel-by-pixel baseline agrees with the raster reference."""

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import bijectors
from cinc_tfp.bijectors import init
from cinc_tfp.bijectors import triangular_conv
from tests import bijector_checks
from benchmarks import pixel_loop

pytest.importorskip('numba')


@pytest.mark.parametrize('batch', [1, 3])  # Serial, and threads.
@pytest.mark.parametrize('corner', triangular_conv.CORNERS)
@pytest.mark.parametrize('kernel_size', [1, 3, 5])
def test_pixel_loop_matches_raster_reference(corner, kernel_size, batch):
  rng = np.random.default_rng(kernel_size)
  kernel = triangular_conv.triangular_kernel(
      tf.constant(0.2 * rng.normal(size=[kernel_size] * 2 + [3, 3])),
      tf.exp(tf.constant(0.3 * rng.normal(size=[3]))), corner)
  x = tf.constant(rng.normal(size=[batch, 6, 5, 3]))
  y = triangular_conv.causal_conv2d(x, kernel, corner)
  solved = pixel_loop.solve(y.numpy(), kernel.numpy(), corner)
  np.testing.assert_allclose(
      solved, triangular_conv.solve_raster(y, kernel, corner), rtol=1e-10,
      atol=1e-10)
  np.testing.assert_allclose(solved, x, rtol=1e-10, atol=1e-10)


def test_pixel_loop_inverts_a_cinc_layer_as_its_reference_does():
  layer = bijectors.CIncConv2D(**bijector_checks.perturbed(
      init.cinc_conv(4, seed=1, dtype=tf.float64), 0.1), corner='bottom_right')
  x = tf.random.stateless_normal([2, 8, 8, 4], [3, 4], dtype=tf.float64)
  y = layer.forward(x)
  solved = pixel_loop.solve((y - layer.bias).numpy(),
                            layer.effective_kernel().numpy(), layer.corner)
  np.testing.assert_allclose(solved, layer.inverse_reference(y), rtol=1e-10,
                             atol=1e-10)
