"""Corner-padded ("causal") 2-D convolutions and their exact inverses.

A `k x k` convolution whose input is padded with `k - 1` zeros on two adjacent
sides only (say top and left) makes output pixel `(i, j)` read input pixels
`(i', j')` with `i - k < i' <= i` and `j - k < j' <= j`. In raster order its
Jacobian is block triangular with the tap `K[k-1, k-1]` (a `C x C` channel
matrix) on the diagonal, so the convolution is inverted exactly by forward
substitution once that tap is triangular with a non-zero diagonal.

Two solvers are provided:

* `solve_rows` works one image row at a time (`H` sequential steps). Within a
  row the map is a `(W*C) x (W*C)` banded upper-triangular matrix; the rows
  above enter through `k - 1` more banded matrices. Each step is one matmul
  over the whole batch.
* `solve_raster` is the plain pixel-by-pixel reference (`H*W` steps), kept for
  tests and benchmarks.

Both are pure TensorFlow ops, so they run in `tf.function`, under XLA and in
a SavedModel. Other corners are handled by flipping the image and the kernel
so that the padded corner becomes the top-left one.

Channel convention: `y[..., o] = sum_i x[..., i] K[a, b, i, o]` (TF's HWIO
layout). The diagonal tap is upper triangular in `(i, o)`, i.e. output channel
`o` depends on input channels `i <= o` of the same pixel.
"""

import numpy as np
import tensorflow as tf

CORNERS = ('top_left', 'top_right', 'bottom_left', 'bottom_right')


def check_corner(corner):
  if corner not in CORNERS:
    raise ValueError(
        f'corner must be one of {CORNERS}, got {corner!r}.')


def _flipped_axes(corner):
  """Image axes (of `[B, H, W, C]`) to reverse to move `corner` to top-left."""
  axes = []
  if corner.startswith('bottom'):
    axes.append(1)
  if corner.endswith('right'):
    axes.append(2)
  return axes


def diagonal_tap(kernel_size, corner):
  """Index `(a, b)` of the kernel tap that multiplies the output's own pixel."""
  check_corner(corner)
  last = kernel_size - 1
  return (0 if corner.startswith('bottom') else last,
          0 if corner.endswith('right') else last)


def triangular_kernel(kernel, diagonal, corner):
  """Kernel whose diagonal tap is `strict_upper(tap) + diag(diagonal)`.

  Args:
    kernel: `[k, k, C, C]` free weights; the lower triangle and diagonal of the
      diagonal tap are ignored.
    diagonal: `[C]` diagonal of the diagonal tap (must be non-zero).
    corner: padded corner, one of `CORNERS`.

  Returns:
    The effective `[k, k, C, C]` kernel.
  """
  k = kernel.shape[0]
  channels = kernel.shape[-1]
  a, b = diagonal_tap(k, corner)
  tap_mask = np.triu(np.ones([channels, channels]), 1)
  mask = np.ones([k, k, channels, channels])
  mask[a, b] = tap_mask
  eye = np.zeros([k, k, channels, channels])
  eye[a, b] = np.eye(channels)
  mask = tf.constant(mask, kernel.dtype)
  eye = tf.constant(eye, kernel.dtype)
  return kernel * mask + eye * diagonal


def _paddings(kernel_size, corner):
  pad = kernel_size - 1
  top = pad if corner.startswith('top') else 0
  left = pad if corner.endswith('left') else 0
  return [[0, 0], [top, pad - top], [left, pad - left], [0, 0]]


def causal_conv2d(x, kernel, corner='top_left'):
  """Convolution of `x` (`[B, H, W, C]`) padded on `corner` only."""
  check_corner(corner)
  x = tf.pad(x, _paddings(kernel.shape[0], corner))
  return tf.nn.conv2d(x, kernel, strides=1, padding='VALID')


def _to_top_left(tensor, kernel, corner):
  axes = _flipped_axes(corner)
  if not axes:
    return tensor, kernel
  return tf.reverse(tensor, axes), tf.reverse(kernel, [a - 1 for a in axes])


def _from_top_left(tensor, corner):
  axes = _flipped_axes(corner)
  return tf.reverse(tensor, axes) if axes else tensor


def row_bands(kernel, width):
  """Banded matrices of a top-left causal conv acting on flattened rows.

  Row `i` of the output, flattened to `[W*C]`, equals
  `sum_a x_row[i - k + 1 + a] @ bands[a]`.

  Args:
    kernel: `[k, k, C, C]` kernel.
    width: image width `W`.

  Returns:
    `[k, W*C, W*C]` tensor; `bands[k-1]` is the within-row matrix.
  """
  k, channels = kernel.shape[1], kernel.shape[-1]
  shift = np.zeros([k, width, width])
  for b in range(k):
    for q in range(width):
      p = q - (k - 1) + b
      if 0 <= p < width:
        shift[b, p, q] = 1.
  bands = tf.einsum('bpq,abio->apiqo', tf.constant(shift, kernel.dtype), kernel)
  return tf.reshape(bands, [-1, width * channels, width * channels])


def solve_rows(y, kernel, corner='top_left'):
  """Inverts `causal_conv2d` one image row at a time (`H` steps).

  With `T` the within-row matrix and `A` the matrix of the `k - 1` rows above
  (see `row_bands`), row `i` satisfies `x_i T = y_i - [x_{i-k+1} .. x_{i-1}] A`.
  `T` is upper triangular with the tap's diagonal on its diagonal, so `T^-1`
  is computed once by substitution (`triangular_solve`), and then

  ```none
  x_i = y_i T^-1 - [x_{i-k+1} .. x_{i-1}] (A T^-1),
  ```

  where `y T^-1` is one matmul for all rows and each sequential step is one
  matmul over the whole batch.

  Args:
    y: `[B, H, W, C]` output of `causal_conv2d(x, kernel, corner)`; `H`, `W`
      and `C` must be static.
    kernel: `[k, k, C, C]` kernel whose diagonal tap is upper triangular with a
      non-zero diagonal.
    corner: padded corner.

  Returns:
    `x` with `causal_conv2d(x, kernel, corner) == y`.
  """
  check_corner(corner)
  y, kernel = _to_top_left(y, kernel, corner)
  _, height, width, channels = y.shape
  k = kernel.shape[0]
  row_size = width * channels
  bands = row_bands(kernel, width)
  within_row_inverse = tf.linalg.triangular_solve(
      bands[k - 1], tf.eye(row_size, dtype=y.dtype), lower=False)
  rows_above = tf.matmul(
      tf.reshape(bands[:k - 1], [(k - 1) * row_size, row_size]),
      within_row_inverse)
  # [H, B, W*C]: each row of every image, already multiplied by T^-1.
  y_rows = tf.einsum('bhp,pq->hbq', tf.reshape(y, [-1, height, row_size]),
                     within_row_inverse)
  zero_row = tf.zeros_like(y_rows[0])
  x_rows = []
  for i in range(height):
    x_row = y_rows[i]
    if k > 1:
      above = [x_rows[r] if r >= 0 else zero_row for r in range(i - k + 1, i)]
      x_row -= tf.matmul(tf.concat(above, axis=1), rows_above)
    x_rows.append(x_row)
  x = tf.reshape(tf.stack(x_rows, axis=1), [-1, height, width, channels])
  return _from_top_left(x, corner)


def solve_raster(y, kernel, corner='top_left'):
  """Reference inverse of `causal_conv2d`: one pixel at a time, raster order."""
  check_corner(corner)
  y, kernel = _to_top_left(y, kernel, corner)
  _, height, width, channels = y.shape
  k = kernel.shape[0]
  tap = kernel[k - 1, k - 1]
  y_pixels = tf.transpose(y, [1, 2, 0, 3])  # [H, W, B, C]
  batch = tf.shape(y)[0]
  solved = tf.zeros(
      tf.stack([height + k - 1, width + k - 1, batch, channels]), y.dtype)

  def step(n, solved):
    i, j = n // width, n % width
    patch = tf.slice(solved, tf.stack([i, j, 0, 0]), [k, k, -1, -1])
    residual = y_pixels[i, j] - tf.einsum('hwbi,hwio->bo', patch, kernel)
    pixel = tf.linalg.triangular_solve(
        tap, tf.transpose(residual), lower=False, adjoint=True)
    return n + 1, tf.tensor_scatter_nd_update(
        solved, [[i + k - 1, j + k - 1]], tf.transpose(pixel)[tf.newaxis])

  _, solved = tf.while_loop(
      lambda n, _: n < height * width, step, [tf.constant(0), solved])
  x = tf.transpose(solved[k - 1:, k - 1:], [2, 0, 1, 3])
  return _from_top_left(x, corner)
