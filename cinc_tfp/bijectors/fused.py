"""Forward pass and log-determinant in one sweep (as in distrax).

TFP computes `forward` and `forward_log_det_jacobian` separately, which
re-runs a coupling layer's networks. Bijectors of this package that can do
better expose `forward_and_log_det(x)`; this module applies it through
`tfb.Chain`s, falling back to TFP's two calls for any other bijector.
"""

import tensorflow_probability as tfp

__all__ = ['forward_and_log_det']


def forward_and_log_det(bijector, x):
  """`(bijector.forward(x), bijector.forward_log_det_jacobian(x))`, fused.

  The log-determinant is taken over `bijector.forward_min_event_ndims`.
  """
  if hasattr(bijector, 'forward_and_log_det'):
    return bijector.forward_and_log_det(x)
  if isinstance(bijector, tfp.bijectors.Chain):
    log_det = 0.
    # A Chain applies its last bijector first.
    for part in reversed(bijector.bijectors):
      x, part_log_det = forward_and_log_det(part, x)
      log_det += part_log_det
    return x, log_det
  return (bijector.forward(x), bijector.forward_log_det_jacobian(
      x, event_ndims=bijector.forward_min_event_ndims))
