"""Corner-padded ("causal") 2-D convolutions and their exact inverses.

A `k x k` convolution whose input is padded with `k - 1` zeros on two adjacent
sides only (say top and left) makes output pixel `(i, j)` read input pixels
`(i', j')` with `i - k < i' <= i` and `j - k < j' <= j`. In raster order its
Jacobian is block triangular with the tap `K[k-1, k-1]` (a `C x C` channel
matrix) on the diagonal, so the convolution is inverted exactly by forward
substitution once that tap is triangular with a non-zero diagonal.

Two solvers are provided:

* `solve_rows` works one image row at a time (`H` sequential steps). Within a
  row the map is a `(W*C) x (W*C)` banded block-Toeplitz upper-triangular
  matrix; the rows above enter through `k - 1` more banded matrices. Each step
  is `k - 1` matmuls over the whole batch.
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


def _row_taps(kernel, row):
  """`[k, C, C]` taps of kernel row `row`; tap `m` reads `m` columns left."""
  k = kernel.shape[1]
  return tf.stack([kernel[row, k - 1 - m] for m in range(k)])


def _toeplitz_matrix(blocks, width):
  """`[W*C, W*C]` block upper-triangular Toeplitz matrix of `[n, C, C]` blocks.

  Block `(p, q)` is `blocks[q - p]` for `0 <= q - p < n`, zero otherwise; in a
  flattened row `r`, `(r @ M)[q] = sum_d r[q - d] @ blocks[d]`.
  """
  n, channels = blocks.shape[0], blocks.shape[-1]
  padded = tf.concat([blocks, tf.zeros_like(blocks[:1])], axis=0)
  index = np.array([[q - p if 0 <= q - p < n else n for q in range(width)]
                    for p in range(width)])
  matrix = tf.transpose(tf.gather(padded, index), [0, 2, 1, 3])
  return tf.reshape(matrix, [width * channels, width * channels])


def _inverse_blocks(taps, width):
  """Blocks `Q_0 .. Q_{W-1}` of the inverse of `_toeplitz_matrix(taps)`.

  `taps[0]` is upper triangular with a non-zero diagonal. Convolving with
  `taps` and then with `Q` is the identity: `sum_m taps[m] Q_{d-m} = [d = 0]`,
  so `Q_0 = taps[0]^-1` and `Q_d = -taps[0]^-1 sum_{m>=1} taps[m] Q_{d-m}`.
  """
  k, channels = taps.shape[0], taps.shape[-1]
  tap_inverse = tf.linalg.triangular_solve(
      taps[0], tf.eye(channels, dtype=taps.dtype), lower=False)
  if k == 1:
    return tf.pad(tap_inverse[tf.newaxis], [[0, width - 1], [0, 0], [0, 0]])
  lead = tf.matmul(tap_inverse, tf.concat([taps[m] for m in range(1, k)], 1))
  zero = tf.zeros_like(tap_inverse)
  blocks = [tap_inverse]
  for d in range(1, width):
    previous = [blocks[d - m] if d >= m else zero for m in range(1, k)]
    blocks.append(-tf.matmul(lead, tf.concat(previous, axis=0)))
  return tf.stack(blocks)


def _product_blocks(taps, blocks):
  """Blocks of `_toeplitz_matrix(taps) @ _toeplitz_matrix(blocks)`."""
  k, n = taps.shape[0], blocks.shape[0]
  padded = tf.pad(blocks, [[k - 1, 0], [0, 0], [0, 0]])
  shifted = tf.stack([padded[k - 1 - j:k - 1 - j + n] for j in range(k)])
  return tf.einsum('jab,jdbc->dac', taps, shifted)


def solve_rows(y, kernel, corner='top_left'):
  """Inverts `causal_conv2d` one image row at a time (`H` steps).

  Flatten row `i` to `[W*C]`. Kernel row `k - 1 - m` maps input row `i - m`
  to output row `i` through a banded block-Toeplitz matrix `B_m`, so
  `y_i = sum_m x_{i-m} B_m`. The within-row matrix `T = B_0` is block upper
  triangular with the (triangular) diagonal tap on its diagonal, so its
  inverse is block upper-triangular Toeplitz too: its `W` blocks come from a
  recursion on `C x C` matrices (`_inverse_blocks`), not from a
  `(W*C)`-sized solve, and so do the blocks of `B_m T^-1`. Then

  ```none
  x_i = y_i T^-1 - sum_{m=1}^{k-1} x_{i-m} (B_m T^-1),
  ```

  where `y T^-1` is one matmul for all rows and each sequential step is
  `k - 1` matmuls over the whole batch.

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
  inverse_blocks = _inverse_blocks(_row_taps(kernel, k - 1), width)
  within_row_inverse = _toeplitz_matrix(inverse_blocks, width)
  rows_above = {
      m: _toeplitz_matrix(
          _product_blocks(_row_taps(kernel, k - 1 - m), inverse_blocks), width)
      for m in range(1, k)}
  # [H, B, W*C]: each row of every image, already multiplied by T^-1.
  y_rows = tf.unstack(tf.einsum(
      'bhp,pq->hbq', tf.reshape(y, [-1, height, row_size]),
      within_row_inverse))
  x_rows = []
  for i in range(height):
    x_row = y_rows[i]
    # Farthest rows first: the nearest one, solved last, ends the chain.
    for m in range(min(i, k - 1), 0, -1):
      x_row -= tf.matmul(x_rows[i - m], rows_above[m])
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
