"""The papers' inverse of a corner-padded convolution, compiled: a baseline.

Forward substitution one pixel at a time in raster order, the sequential
solver of the Emerging and CInC papers, in float64 as they ran it, compiled
to machine code by numba with threads over the batch (one image runs
serially: waking threads for it only costs time). It is what the
`layers` benchmark compares `CIncConv2D`'s inverse with; numba is optional
(`pip install -e '.[benchmark]'`), and `available()` says whether it is here.
"""

import numpy as np

try:
  import numba  # pylint: disable=g-import-not-at-top
except ImportError:
  numba = None

from cinc_tfp.bijectors import triangular_conv


def available():
  return numba is not None


def use_threads(threads):
  """Runs the batch's parallel loop on at most `threads` threads."""
  if numba is not None:
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _solve_top_left(y, kernel):
  """`x` with the top-left padded convolution of `x` equal to `y`.

  `y`: `[B, H, W, C]` float64; `kernel`: `[k, k, C, C]` (HWIO), its tap
  `[k-1, k-1]` upper triangular with a non-zero diagonal.
  """
  batch, height, width, channels = y.shape
  k = kernel.shape[0]
  x = np.zeros_like(y)
  for n in numba.prange(batch):  # pylint: disable=not-an-iterable
    residual = np.empty(channels)
    for i in range(height):
      for j in range(width):
        for o in range(channels):
          residual[o] = y[n, i, j, o]
        for a in range(max(0, k - 1 - i), k):
          for b in range(max(0, k - 1 - j), k):
            if a == k - 1 and b == k - 1:
              continue
            for c in range(channels):
              value = x[n, i - k + 1 + a, j - k + 1 + b, c]
              for o in range(channels):
                residual[o] -= value * kernel[a, b, c, o]
        # The pixel's own tap: output channel o reads input channels <= o.
        for o in range(channels):
          total = residual[o]
          for c in range(o):
            total -= x[n, i, j, c] * kernel[k - 1, k - 1, c, o]
          x[n, i, j, o] = total / kernel[k - 1, k - 1, o, o]
  return x


# numba's compilations of `_solve_top_left`, by whether threads share the
# batch, made on first use.
_compiled = {}


def solve(y, kernel, corner='top_left'):
  """NumPy float64 `x` with `causal_conv2d(x, kernel, corner) == y`.

  Args:
    y: `[B, H, W, C]` array.
    kernel: `[k, k, C, C]` effective kernel (diagonal tap triangular).
    corner: padded corner.
  """
  if numba is None:
    raise ImportError("benchmarks.pixel_loop needs numba: pip install -e "
                      "'.[benchmark]'")
  threads = len(y) > 1
  if threads not in _compiled:
    _compiled[threads] = numba.njit(parallel=threads)(_solve_top_left)
  triangular_conv.check_corner(corner)
  axes = tuple(triangular_conv.flipped_axes(corner))
  y = np.ascontiguousarray(np.flip(np.asarray(y, np.float64), axes))
  kernel = np.ascontiguousarray(
      np.flip(np.asarray(kernel, np.float64), tuple(a - 1 for a in axes)))
  return np.flip(_compiled[threads](y, kernel), axes)
