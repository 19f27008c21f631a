"""Forward pass and log-determinant in one sweep (as in distrax).

TFP computes `forward` and `forward_log_det_jacobian` separately, which
re-runs a coupling layer's networks. Bijectors of this package that can do
better expose `forward_and_log_det(x)`; this module applies it through
`tfb.Chain`s, falling back to TFP's two calls for any other bijector.
"""

# `tfb.Chain(...)` builds a `_Chain` unless every part is a CompositeTensor.
from tensorflow_probability.python.bijectors import chain as _chain

__all__ = ['forward_and_log_det']

_CHAINS = (_chain.Chain, _chain._Chain)  # pylint: disable=protected-access


def forward_and_log_det(bijector, x, event_ndims=None):
  """`(bijector.forward(x), bijector.forward_log_det_jacobian(x, event_ndims))`.

  Args:
    bijector: any TFP bijector; chains are walked part by part.
    x: input.
    event_ndims: rank of the events of `x`; defaults to
      `bijector.forward_min_event_ndims`.
  """
  if event_ndims is None:
    event_ndims = bijector.forward_min_event_ndims
  if isinstance(bijector, _CHAINS):
    log_det = 0.
    # A Chain applies its last bijector first.
    for part in reversed(bijector.bijectors):
      x, part_log_det = forward_and_log_det(part, x, event_ndims)
      event_ndims = part.forward_event_ndims(event_ndims)
      log_det += part_log_det
    return x, log_det
  if (hasattr(bijector, 'forward_and_log_det') and
      event_ndims == bijector.forward_min_event_ndims):
    return bijector.forward_and_log_det(x)
  return (bijector.forward(x),
          bijector.forward_log_det_jacobian(x, event_ndims=event_ndims))
