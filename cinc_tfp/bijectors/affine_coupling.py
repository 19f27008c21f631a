"""Affine coupling (RealNVP / Glow): the two-block baseline."""

from cinc_tfp.bijectors import _block_coupling

__all__ = ['AffineCoupling']


class AffineCoupling(_block_coupling.BlockCoupling):
  """Affine coupling of two channel halves (Dinh et al. 2017; Glow).

  ```none
  y1 = x1
  y2 = (x2 + t(x1)) * s(x1),    [t, h] = network(x1),
  s = m + (1 - m) sigmoid(h + 2)
  log|det J| = sum over pixels and channels of log s(x1)
  ```

  `m = 1e-3` keeps the scale from 0, so that the inverse never divides by
  less (see `_block_coupling.MIN_SCALE`).
  `s = exp(h)` with `scale='exp'`. `network` maps `[B, H, W, C/2]` to
  `[B, H, W, C]` (shift then raw scale), e.g. `cinc_tfp.nets.CouplingNetwork`.
  """

  def __init__(self, network, scale='sigmoid', validate_args=False,
               name='affine_coupling'):
    parameters = dict(locals())
    super().__init__([network], 2, scale, validate_args, parameters, name)
