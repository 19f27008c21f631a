"""Quad-coupling (Nagar et al., 2021): a four-block generalized Feistel coupling."""

from cinc_tfp.bijectors import _block_coupling

__all__ = ['QuadCoupling']


class QuadCoupling(_block_coupling.BlockCoupling):
  """Four-block coupling: every block is conditioned on all blocks before it.

  Channels are split into four equal blocks `x1..x4`:

  ```none
  y1 = x1
  y2 = (x2 + t1(x1))         * s1(x1)
  y3 = (x3 + t2(x1, x2))     * s2(x1, x2)
  y4 = (x4 + t3(x1, x2, x3)) * s3(x1, x2, x3)
  log|det J| = sum over blocks, pixels and channels of log s_i
  ```

  with `[t_i, h_i] = networks[i-1](concat(x1..x_i))` and `s_i = m + (1 - m)
  sigmoid(h_i + 2)`, `m = 1e-3` (`_block_coupling.MIN_SCALE`: the inverse
  never divides by less), or `exp(h_i)` with `scale='exp'`. The inverse recovers `x2`, `x3`,
  `x4` in that order, each from the blocks already recovered (the authors'
  published reverse pass read the wrong block; this one is exact).
  `networks[i-1]` maps `[B, H, W, i*C/4]` to `[B, H, W, C/2]`.
  """

  def __init__(self, networks, scale='sigmoid', validate_args=False,
               name='quad_coupling'):
    parameters = dict(locals())
    super().__init__(networks, 4, scale, validate_args, parameters, name)
