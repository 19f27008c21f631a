"""A map and its log-determinant in one sweep, through `tfb.Chain`s.

The bijectors of this package compute both at once (`_base.Bijector`, as in
distrax), in either direction; these functions apply that through chains,
falling back to TFP's two calls for any other bijector.
"""

import tensorflow_probability as tfp

from cinc_tfp.bijectors import _base

__all__ = ['forward_and_log_det', 'inverse_and_log_det', 'parts']


def _is_chain(bijector):
  """Whether `bijector` is a `tfb.Chain`. `tfb.Chain(...)` builds an instance
  of a base class of `tfb.Chain` (a `Composition`) unless every part is a
  CompositeTensor: that class is the one `issubclass` finds here."""
  return isinstance(bijector, tfp.bijectors.Chain) or (
      isinstance(bijector, tfp.bijectors.Composition) and
      issubclass(tfp.bijectors.Chain, type(bijector)))


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
  if _is_chain(bijector):
    log_det = 0.
    # A Chain applies its last bijector first.
    for part in reversed(bijector.bijectors):
      x, part_log_det = forward_and_log_det(part, x, event_ndims)
      event_ndims = part.forward_event_ndims(event_ndims)
      log_det += part_log_det
    return x, log_det
  if (isinstance(bijector, _base.Bijector) and
      event_ndims == bijector.forward_min_event_ndims):
    return bijector.forward_and_log_det(x)
  return (bijector.forward(x),
          bijector.forward_log_det_jacobian(x, event_ndims=event_ndims))


def inverse_and_log_det(bijector, y, event_ndims=None):
  """`(bijector.inverse(y), bijector.inverse_log_det_jacobian(y, event_ndims))`,
  as `forward_and_log_det` (`event_ndims` defaults to
  `bijector.inverse_min_event_ndims`)."""
  if event_ndims is None:
    event_ndims = bijector.inverse_min_event_ndims
  if _is_chain(bijector):
    log_det = 0.
    for part in bijector.bijectors:
      y, part_log_det = inverse_and_log_det(part, y, event_ndims)
      event_ndims = part.inverse_event_ndims(event_ndims)
      log_det += part_log_det
    return y, log_det
  if (isinstance(bijector, _base.Bijector) and
      event_ndims == bijector.inverse_min_event_ndims):
    return bijector.inverse_and_log_det(y)
  return (bijector.inverse(y),
          bijector.inverse_log_det_jacobian(y, event_ndims=event_ndims))


def parts(bijector, event_ndims):
  """The bijectors that are not chains in `bijector`, walked through chains,
  in the order they apply forward, each with the rank of its input's events
  (`bijector`'s input having rank `event_ndims`)."""
  if not _is_chain(bijector):
    return [(bijector, event_ndims)]
  found = []
  for part in reversed(bijector.bijectors):
    found += parts(part, event_ndims)
    event_ndims = part.forward_event_ndims(event_ndims)
  return found
