"""Corner-padded ("causal") 2-D convolutions and their exact inverses.

A `k x k` convolution whose input is padded with `k - 1` zeros on two adjacent
sides only (say top and left) makes output pixel `(i, j)` read input pixels
`(i', j')` with `i - k < i' <= i` and `j - k < j' <= j`. In raster order its
Jacobian is block triangular with the tap `K[k-1, k-1]` (a `C x C` channel
matrix) on the diagonal, so the convolution is inverted exactly by forward
substitution once that tap is triangular with a non-zero diagonal.

Three solvers are provided:

* `solve_rows` works one image row at a time (`H` sequential steps). Within a
  row the map is a `(W*C) x (W*C)` banded block-Toeplitz upper-triangular
  matrix; the rows above enter through `k - 1` more banded matrices (see
  `row_matrices`). Each step is `k - 1` matmuls over the whole batch.
* `solve_with_plan` is `solve_rows` with its matrices computed once per
  kernel value (`inverse_plan`), used only while the kernel's parameters
  equal those the plan was made from; one small image it inverts in one
  convolution (`inverse_kernel`).
* `solve_raster` is the plain pixel-by-pixel reference (`H*W` steps), kept for
  tests and benchmarks.

All are pure TensorFlow ops, so they run in `tf.function`, under XLA and in
a SavedModel. Other corners are handled as the top-left one with a flipped
kernel: the raster reference flips the image too, the row solver only its
order of rows and of pixels within a row.

Channel convention: `y[..., o] = sum_i x[..., i] K[a, b, i, o]` (TF's HWIO
layout). The diagonal tap is upper triangular in `(i, o)`, i.e. output channel
`o` depends on input channels `i <= o` of the same pixel.
"""

import functools
import typing

import numpy as np
import tensorflow as tf

from cinc_tfp.bijectors import _util

CORNERS = ('top_left', 'top_right', 'bottom_left', 'bottom_right')
# One image of at most this many pixels is inverted by one convolution with
# the inverse's kernel (`inverse_kernel`) rather than row by row: faster at
# 8x8 and below, level at 16x16x12 alone but faster in a flow's sampling,
# far slower at 32x32x3 (its arithmetic grows as (H W)^2;
# docs/performance.md).
ONE_CONV_MAX_PIXELS = 256


def check_corner(corner):
  if corner not in CORNERS:
    raise ValueError(
        f'corner must be one of {CORNERS}, got {corner!r}.')


def flipped_axes(corner):
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
  k, channels = kernel.shape[0], kernel.shape[-1]
  eye = np.zeros([k, k, channels, channels])
  eye[diagonal_tap(k, corner)] = np.eye(channels)
  return (kernel * _tap_mask(kernel, corner, strict=True) +
          tf.constant(eye, kernel.dtype) * diagonal)


def _tap_mask(kernel, corner, strict):
  """Ones shaped as `kernel`, but zero below the diagonal tap's diagonal
  (and on it, if `strict`)."""
  k, channels = kernel.shape[0], kernel.shape[-1]
  mask = np.ones([k, k, channels, channels])
  mask[diagonal_tap(k, corner)] = np.triu(np.ones([channels, channels]),
                                          1 if strict else 0)
  return tf.constant(mask, kernel.dtype)


def _paddings(kernel_shape, corner):
  rows, columns = kernel_shape[0] - 1, kernel_shape[1] - 1
  top = rows if corner.startswith('top') else 0
  left = columns if corner.endswith('left') else 0
  return [[0, 0], [top, rows - top], [left, columns - left], [0, 0]]


def causal_conv2d(x, kernel, corner='top_left'):
  """Convolution of `x` (`[B, H, W, C]`) padded on `corner` only, by a
  `[kh, kw, C, C']` kernel.

  The padding is the convolution's own: a `tf.pad` before a `VALID`
  convolution runs as fast (TensorFlow fuses the two), but TensorFlow's
  eager `conv2d` returns its input for an empty batch, which is the right
  shape only when nothing was padded (`C' == C`, as in every layer here).
  """
  check_corner(corner)
  return tf.nn.conv2d(x, kernel, strides=1,
                      padding=_paddings(kernel.shape, corner))


def inverse_kernel(kernel, height, width, corner='top_left'):
  """`[H, W, C, C]` kernel of the inverse of `causal_conv2d(., kernel,
  corner)` on `H x W` images, itself a convolution padded on `corner`:
  `causal_conv2d(y, inverse_kernel(kernel, H, W, corner), corner)` equals
  `solve_rows(y, kernel, corner)`.

  Images extended by zeros beyond the corner's two sides form an algebra
  under such convolutions, in which a kernel whose diagonal tap is
  invertible has an inverse; a pixel of the output reads only pixels of the
  input between it and the corner, so the inverse's `H x W` taps nearest
  the corner invert `H x W` images exactly. They are the solution for one
  impulse per channel at the corner pixel. One convolution, but `(H W)^2 C^2`
  multiply-adds per image where the row solve does `3 H (W C)^2`.
  """
  check_corner(corner)
  matrices = row_matrices(_top_left_kernel(kernel, corner), width,
                          mirrored=corner.endswith('right'))
  return _inverse_kernel_by_rows(matrices, height, width, kernel.shape[-1],
                                 corner)


def _inverse_kernel_by_rows(matrices, height, width, channels, corner):
  """`inverse_kernel`, from the kernel's `row_matrices` for `corner`."""
  impulses = np.zeros([channels, height, width, channels])
  impulses[np.arange(channels),
           0 if corner.startswith('top') else height - 1,
           0 if corner.endswith('left') else width - 1,
           np.arange(channels)] = 1.
  # [C_in, H, W, C_out]: the response at distance (d, e) from the corner is
  # the kernel's tap (H-1-d, W-1-e), as causal_conv2d lays a kernel out.
  responses = _solve_by_rows(tf.constant(impulses, matrices.dtype), matrices,
                             corner)
  return tf.reverse(tf.transpose(responses, [1, 2, 0, 3]), [0, 1])


def _top_left_kernel(kernel, corner):
  """`kernel` flipped so that `corner` becomes the top-left one."""
  axes = flipped_axes(corner)
  return tf.reverse(kernel, [a - 1 for a in axes]) if axes else kernel


def _to_top_left(tensor, kernel, corner):
  """Flips `tensor` (`[B, H, W, C]`) and `kernel` so `corner` is top-left."""
  axes = flipped_axes(corner)
  if not axes:
    return tensor, kernel
  return tf.reverse(tensor, axes), _top_left_kernel(kernel, corner)


def _from_top_left(tensor, corner):
  axes = flipped_axes(corner)
  return tf.reverse(tensor, axes) if axes else tensor


def _row_blocks(kernel, width):
  """`[W, k, C, C]`: blocks `d` of the matrices of `row_matrices`.

  Kernel row `r` acts on a flattened image row as the block-Toeplitz matrix
  with blocks `F_{r,j} = kernel[r, k-1-j]` (pixel `q` reads pixel `q - j`);
  row `k - 1` is the within-row matrix `T`, with the triangular diagonal tap
  `D = F_{k-1,0}`. `T^-1` is block-Toeplitz too, with blocks `Q_d`: composing
  the two is the identity, so `Q_0 = D^-1` and
  `Q_{d+1} = -D^-1 sum_{j>=1} F_{k-1,j} Q_{d+1-j}`; and the blocks of
  `F_r T^-1` are `P_{r,d} = sum_j F_{r,j} Q_{d-j}`. One matmul per `d` with
  `[Q_d; Q_{d-1}; ..; Q_{d-k+1}]` gives `P_{0..k-2,d}`, `Q_d` and `Q_{d+1}`.
  """
  k, channels = kernel.shape[0], kernel.shape[-1]
  # taps[r][j] = kernel[r, k - 1 - j], the tap reading j pixels to the left.
  taps = [tf.unstack(row)[::-1] for row in tf.unstack(kernel)]
  eye = tf.eye(channels, dtype=kernel.dtype)
  tap_inverse = tf.linalg.triangular_solve(taps[k - 1][0], eye, lower=False)
  if k == 1:
    return tf.pad(tap_inverse[tf.newaxis, tf.newaxis],
                  [[0, width - 1], [0, 0], [0, 0], [0, 0]])
  lead = tf.matmul(tap_inverse, tf.concat(taps[k - 1][1:], axis=1))
  step = tf.concat(
      [tf.concat(taps[r], axis=1) for r in range(k - 1)] +
      [tf.pad(eye, [[0, 0], [0, (k - 1) * channels]]),
       -tf.pad(lead, [[0, 0], [0, channels]])], axis=0)
  zero = tf.zeros_like(eye)
  inverse_blocks, outputs = [tap_inverse], []
  for d in range(width):
    recent = [inverse_blocks[d - j] if d >= j else zero for j in range(k)]
    outputs.append(tf.matmul(step, tf.concat(recent, axis=0)))
    if d + 1 < width:
      inverse_blocks.append(outputs[-1][k * channels:])
  return tf.reshape(tf.stack(outputs)[:, :k * channels],
                    [width, k, channels, channels])


def row_matrices(kernel, width, mirrored=False):
  """`[k, W*C, W*C]` matrices of the row-wise inverse of a top-left conv.

  Flatten image row `i` to `[W*C]`. Kernel row `k - 1 - m` maps input row
  `i - m` to output row `i` through a banded block-Toeplitz matrix `B_m`, so
  `y_i = sum_m x_{i-m} B_m`; `T = B_0` is block upper triangular with the
  diagonal tap on its diagonal. Returns `B_m T^-1` at index `k - 1 - m` (so
  `T^-1` last). All are block upper-triangular Toeplitz: their `W` blocks of
  `C x C` come from `_row_blocks`, never from a `(W*C)`-sized solve.

  Args:
    kernel: `[k, k, C, C]` top-left kernel, diagonal tap upper triangular.
    width: image width `W`.
    mirrored: lay the pixels of a row out right to left (the matrices of the
      image flipped left-right, without flipping it).
  """
  k, channels = kernel.shape[0], kernel.shape[-1]
  # Block (p, q) of each matrix is blocks[q - p] for q >= p, else zero.
  blocks = tf.pad(_row_blocks(kernel, width), [[0, 1], [0, 0], [0, 0], [0, 0]])
  pixels = np.arange(width)
  if mirrored:
    pixels = pixels[::-1]
  offsets = pixels[np.newaxis, :] - pixels[:, np.newaxis]
  matrices = tf.gather(blocks, np.where(offsets >= 0, offsets, width))
  return tf.reshape(tf.transpose(matrices, [2, 0, 3, 1, 4]),
                    [k, width * channels, width * channels])


def solve_rows(y, kernel, corner='top_left'):
  """Inverts `causal_conv2d` one image row at a time (`H` steps).

  With the matrices of `row_matrices`,

  ```none
  x_i = y_i T^-1 - sum_{m=1}^{k-1} x_{i-m} (B_m T^-1),
  ```

  where `y T^-1` is one matmul for all rows and each sequential step is
  `k - 1` matmuls over the whole batch. Other corners run the rows bottom-up
  and/or lay the pixels of a row out right to left; the image itself is
  never flipped. `solve_with_plan` does the same with matrices computed
  once.

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
  matrices = row_matrices(_top_left_kernel(kernel, corner), y.shape[2],
                          mirrored=corner.endswith('right'))
  return _solve_by_rows(y, matrices, corner)


def _solve_by_plan(y, plan, corner):
  """By the plan's `inverse_kernel` for one image of its size (see
  `InversePlan.one_image`), else row by row."""
  if plan.rows is None or (y.shape[0] == 1 and
                           plan.one_image_fits(y.shape[1:])):
    return causal_conv2d(y, plan.one_image, corner)
  return _solve_by_rows(y, plan.rows, corner)


def _solve_by_rows(y, matrices, corner):
  """The row recursion of `solve_rows` with its `[k, W*C, W*C]` matrices.

  A batch known to hold one image when traced is solved with a zero image
  appended: TensorFlow's CPU matmul multiplies a `[2, W*C]` matrix faster
  than a `[1, W*C]` vector (33 against 64 us at `W*C = 192`, one run), and
  the recursion's sequential steps are such products. A batch of unknown
  size is solved as it comes: `CIncFlow` pins a batch of one image to a
  known size before it inverts, and the shape arithmetic of a pad for an
  unknown size slowed every other size (docs/performance.md).
  """
  batch, height, width, channels = y.shape
  k = matrices.shape[0]
  row_size = width * channels
  rows = tf.reshape(y, [-1, height, row_size])
  one_image = batch == 1
  if one_image:
    rows = tf.pad(rows, [[0, 1], [0, 0], [0, 0]])
  # Each row of every image, already multiplied by T^-1.
  y_rows = tf.unstack(tf.reshape(
      tf.matmul(tf.reshape(rows, [-1, row_size]), matrices[k - 1]),
      [-1, height, row_size]), axis=1)
  bottom_up = corner.startswith('bottom')
  if bottom_up:
    y_rows.reverse()
  x_rows = []
  for i in range(height):
    x_row = y_rows[i]
    # Farthest rows first, so that the nearest one, solved last, ends the
    # chain of dependent operations.
    for m in range(min(i, k - 1), 0, -1):
      x_row -= tf.matmul(x_rows[i - m], matrices[k - 1 - m])
    x_rows.append(x_row)
  if bottom_up:
    x_rows.reverse()
  x = tf.stack(x_rows, axis=1)
  if one_image:
    x = x[:1]
  return tf.reshape(x, [-1, height, width, channels])


class InversePlan(typing.NamedTuple):
  """The matrices of `solve_rows` for one kernel value and image width.

  Attributes:
    parameters: tuple of the tensors the plan was made from (see
      `inverse_plan`).
    corner: the padded corner it inverts.
    rows: `[k, W*C, W*C]` matrices of `row_matrices`; None in a plan that
      inverts one image only (by `one_image`).
    one_image: the `[H, W, C, C]` `inverse_kernel`, which inverts one image
      of `H x W` pixels in one convolution, for an image height given and
      at most `ONE_CONV_MAX_PIXELS` pixels; else None. A plan with `rows`
      uses it for batches known to hold one image; a plan without, for any
      batch (its caller knows it holds one: `CIncFlow.decode` of a batch of
      unknown size).
    reverse_channels: whether it inverts the convolution followed by a
      reversal of the channels: the reversal is folded into its matrices
      (the rows of `T^-1` and the input axis of `one_image`), so it costs
      the solve nothing.
  """
  parameters: typing.Tuple[tf.Tensor, ...]
  corner: str
  rows: typing.Optional[tf.Tensor]
  one_image: typing.Optional[tf.Tensor] = None
  reverse_channels: bool = False

  def fits(self, parameters, image_shape, corner, reverse_channels=False):
    """Whether the plan has the shapes of `parameters` and is for images of
    `image_shape` (`(H, W, C)`) padded on `corner`, with the channels
    reversed after the convolution or not (values are compared when a
    solve runs)."""
    shapes = lambda tensors: [tuple(t.shape) for t in tensors]  # pylint: disable=g-long-lambda
    _, width, channels = image_shape
    if self.rows is None:
      size_fits = self.one_image_fits(image_shape)
    else:
      size_fits = self.rows.shape[-1] == width * channels
    return (corner == self.corner and size_fits and
            reverse_channels == self.reverse_channels and
            shapes(self.parameters) == shapes(parameters))

  def for_one_image(self):
    """The plan for a batch its caller knows holds one image: without rows
    if it has a `one_image`."""
    return self if self.one_image is None else self._replace(rows=None)

  def for_any_batch(self):
    """The plan without its `one_image`, for a batch of any size."""
    return self._replace(one_image=None)

  def in_graph(self):
    """The plan as tensors of the graph being built: its values (eager
    tensors) as constants of the graph, for a captured tensor costs a
    function more per call (itself, eagerly)."""
    if tf.executing_eagerly():
      return self
    constant = lambda value: (  # pylint: disable=g-long-lambda
        tf.constant(value.numpy())
        if isinstance(value, tf.__internal__.EagerTensor) else value)
    return self._replace(parameters=tuple(map(constant, self.parameters)),
                         rows=constant(self.rows),
                         one_image=constant(self.one_image))

  def one_image_fits(self, image_shape):
    """Whether its `one_image` inverts images of `image_shape`."""
    return (self.one_image is not None and
            tuple(self.one_image.shape[:3]) == tuple(image_shape))


def inverse_plan(kernel, width, corner='top_left', parameters=None,
                 height=None, reverse_channels=False):
  """The `InversePlan` of `kernel` for images `width` pixels wide (and
  `height` high, if given): the matrices of `solve_rows`, and for a small
  enough image the `inverse_kernel`, computed in float64 and cast to
  `kernel`'s dtype, once per kernel value: worth it when the same weights
  invert many batches (sampling, serving).

  Args:
    kernel: `[k, k, C, C]` kernel, diagonal tap triangular.
    width: image width `W`.
    corner: padded corner.
    parameters: the tensors `kernel` is computed from (default: `kernel`):
      `solve_with_plan` uses the plan only while its parameters equal
      these, so a bijector can key its plan on its raw weights.
    height: image height `H`, if known.
    reverse_channels: plan the inverse of the convolution followed by a
      reversal of the channels, `y[..., ::-1]` (see
      `InversePlan.reverse_channels`).
  """
  check_corner(corner)
  width = _util.positive_int(width, 'inverse_plan: width')
  if height is not None:
    height = _util.positive_int(height, 'inverse_plan: height')
  one_image_height = (height if height is not None and
                      height * width <= ONE_CONV_MAX_PIXELS else None)
  rows, one_image = _plan_matrices(width, one_image_height, corner,
                                   bool(reverse_channels))(kernel)
  parameters = kernel if parameters is None else parameters
  if not isinstance(parameters, (tuple, list)):
    parameters = (parameters,)
  return InversePlan(tuple(tf.convert_to_tensor(p) for p in parameters),
                     corner, rows, one_image, bool(reverse_channels))


@functools.lru_cache(maxsize=None)
def _plan_matrices(width, one_image_height, corner, reverse_channels):
  """`_matrices_of_plan` traced, as a function of the kernel alone. One per
  image size and corner (traced once per kernel shape), so that the layers
  of a flow that share them share one graph: tracing a `decode` that can make
  its plans afresh took 2.4-3 s for the default model when each layer's plan
  was made inline. (A `functools.partial` rather than a closure: TensorFlow
  counts the traces of all the closures of one function together, and
  warned of retracing when a flow made its plans.)"""
  return tf.function(
      functools.partial(_matrices_of_plan, width=width,
                        one_image_height=one_image_height, corner=corner,
                        reverse_channels=reverse_channels),
      autograph=False)


def _matrices_of_plan(kernel, width, one_image_height, corner,
                      reverse_channels):
  """The row matrices of `kernel` and, given `one_image_height`, its
  `inverse_kernel` (else None), computed in float64 and cast to its dtype;
  with `reverse_channels`, both for inputs whose channels are reversed."""
  channels = kernel.shape[-1]
  wide = tf.cast(kernel, tf.float64)
  rows = row_matrices(_top_left_kernel(wide, corner), width,
                      mirrored=corner.endswith('right'))
  one_image = None
  if one_image_height is not None:
    one_image = _inverse_kernel_by_rows(rows, one_image_height, width,
                                        channels, corner)
  if reverse_channels:
    # Only T^-1 multiplies the input, one pixel's channels per C rows.
    k, size = rows.shape[0], width * channels
    solved_input = tf.reshape(
        tf.reverse(tf.reshape(rows[k - 1], [width, channels, size]), [1]),
        [1, size, size])
    rows = tf.concat([rows[:k - 1], solved_input], axis=0)
    if one_image is not None:
      one_image = tf.reverse(one_image, [2])
  if one_image is not None:
    one_image = tf.cast(one_image, kernel.dtype)
  return tf.cast(rows, kernel.dtype), one_image


def plan_is_current(plan, parameters):
  """Scalar bool tensor: whether `parameters` equal those `plan` was made
  from (its shapes must fit, see `InversePlan.fits`)."""
  return tf.reduce_all([tf.reduce_all(tf.equal(a, tf.convert_to_tensor(b)))
                        for a, b in zip(plan.parameters, parameters)])


def solve_with_plan(y, plan, parameters, kernel_fn, corner='top_left',
                    check=True, reverse_channels=False):
  """`solve_rows(y, kernel_fn(*parameters), corner)`, by `plan` when it can.

  While `parameters` equal the plan's (compared when the solve runs), the
  solve takes the plan's matrices. Otherwise, or if the plan is for other
  shapes or another corner, the kernel and its matrices are computed as in
  `solve_rows`. So a plan is never stale, and the gradients (with respect
  to `y` and `parameters`) are those of the plain solve.

  Args:
    y: `[B, H, W, C]` images, as for `solve_rows`.
    plan: `InversePlan` (see `inverse_plan`).
    parameters: sequence of tensors that determine the kernel.
    kernel_fn: function of `*parameters` returning the `[k, k, C, C]` kernel.
    corner: padded corner.
    check: whether to compare `parameters` with the plan's; `False` when
      the caller knows they are equal (`plan_is_current`), which saves the
      comparison and the `tf.cond` around the two solves.
    reverse_channels: `y` is the convolution's output with its channels
      reversed: solves `solve_rows(y[..., ::-1], ...)`, by a plan made for
      it (`inverse_plan(..., reverse_channels=True)`) at no extra cost.
  """
  check_corner(corner)
  parameters = tuple(tf.convert_to_tensor(p) for p in parameters)
  reverse = ((lambda images: tf.reverse(images, [-1])) if reverse_channels
             else (lambda images: images))

  def solve(y, *parameters):
    return solve_rows(reverse(y), kernel_fn(*parameters), corner)

  if not plan.fits(parameters, y.shape[1:], corner, reverse_channels):
    return solve(y, *parameters)
  # Eager tensors of a plan made outside a graph being built enter it as
  # constants: its gradient function could not capture them.
  plan = plan.in_graph()

  @tf.custom_gradient
  def planned(y, *parameters):
    x = _solve_by_plan(y, plan, corner)

    def gradient(dx):
      # x = A^-1 y, A the convolution by the kernel as the solve reads it
      # (`_as_solved`), then the reversal if any: the gradient for y is
      # A^-T dx, which is the plan's solve differentiated (it is linear in
      # y); and as A x = y holds, the parameters' is that of A x at the
      # solved x, for the output gradient -A^-T dx.
      with tf.GradientTape() as tape:
        tape.watch(y)
        solved = _solve_by_plan(y, plan, corner)
      dy = tape.gradient(solved, y, output_gradients=dx)
      with tf.GradientTape() as tape:
        tape.watch(parameters)
        y_of_x = reverse(causal_conv2d(
            tf.stop_gradient(x), _as_solved(kernel_fn(*parameters), corner),
            corner))
      return [dy, *tape.gradient(y_of_x, parameters, output_gradients=-dy)]

    return x, gradient

  if not check:
    return planned(y, *parameters)
  return tf.cond(plan_is_current(plan, parameters),
                 lambda: planned(y, *parameters),
                 lambda: solve(y, *parameters))


def _as_solved(kernel, corner):
  """`kernel` as the solvers read it: its diagonal tap's strict lower
  triangle, which they ignore, zeroed."""
  return kernel * _tap_mask(kernel, corner, strict=False)


def solve_raster(y, kernel, corner='top_left'):
  """Reference inverse of `causal_conv2d`: one pixel at a time, raster order.

  Only the `k` rows a pixel reads (the `k - 1` solved rows above it and the
  row being solved) are kept as the loop's state, so each step copies `k`
  zero-padded rows rather than the whole image.
  """
  check_corner(corner)
  y, kernel = _to_top_left(y, kernel, corner)
  _, height, width, channels = y.shape
  k = kernel.shape[0]
  tap = kernel[k - 1, k - 1]
  y_pixels = tf.transpose(y, [1, 2, 0, 3])  # [H, W, B, C]
  batch = tf.shape(y)[0]
  # window[a, k - 1 + j] is pixel j of image row i - k + 1 + a; zeros pad
  # the left and the rows above the image.
  blank_row = tf.zeros(tf.stack([1, width + k - 1, batch, channels]), y.dtype)
  window = tf.tile(blank_row, [k, 1, 1, 1])

  def solve_pixel(i, j, window):
    patch = tf.slice(window, tf.stack([0, j, 0, 0]), [k, k, -1, -1])
    residual = y_pixels[i, j] - tf.einsum('hwbi,hwio->bo', patch, kernel)
    pixel = tf.linalg.triangular_solve(
        tap, tf.transpose(residual), lower=False, adjoint=True)
    return tf.tensor_scatter_nd_update(
        window, [[k - 1, j + k - 1]], tf.transpose(pixel)[tf.newaxis])

  def solve_row(i, window, rows):
    _, window = tf.while_loop(
        lambda j, _: j < width, lambda j, w: (j + 1, solve_pixel(i, j, w)),
        [tf.constant(0), window])
    rows = rows.write(i, window[k - 1, k - 1:])
    return i + 1, tf.concat([window[1:], blank_row], axis=0), rows

  _, _, rows = tf.while_loop(
      lambda i, *_: i < height, solve_row,
      [tf.constant(0), window, tf.TensorArray(y.dtype, size=height)])
  x = tf.transpose(rows.stack(), [2, 0, 1, 3])  # [B, H, W, C]
  return _from_top_left(x, corner)
