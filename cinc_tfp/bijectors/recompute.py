"""Invertible steps whose gradient recomputes activations from the inverse."""

import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp.bijectors import _base
from cinc_tfp.bijectors import fused

__all__ = ['Recompute']


class Recompute(_base.NetworkBijector):
  """Bijectors applied in turn, differentiated without their activations.

  ```none
  y = f_n(... f_2(f_1(x))),   log|det J| = sum_i log|det J_i(x_{i-1})|.
  ```

  Each step `f_i` comes from a zero-argument callable of `make_steps` that
  builds it from the current weights (variables read when it is called).
  `forward_and_log_det` keeps only the output `y`: its gradient walks the
  steps backwards, as a RevNet's does (Gomez et al., 2017), rebuilding each
  step's input `x_{i-1} = f_i^{-1}(x_i)` with the step's exact inverse and
  then differentiating that one step again. A training step so holds one
  step's activations at a time, whatever the number of steps, for one more
  forward and one inverse pass per step. The gradients are those of the
  plain chain at the rebuilt inputs, which differ from the true inputs by the
  inverse's rounding, compounded over the steps (a handful of float32 ulps
  per step: see the README).

  `forward`, `inverse` and their log-dets are the plain chain's: only
  `forward_and_log_det` (what `fused.forward_and_log_det` and a `CIncFlow`'s
  `log_prob` call) recomputes.
  """

  def __init__(self, make_steps, event_ndims=3, *, validate_args=False,
               name='recompute'):
    """Builds the bijector.

    Args:
      make_steps: zero-argument callables, each returning one step's
        bijector (from `event_ndims`-rank events to the same rank), in the
        order they apply.
      event_ndims: the rank of the events, the steps' minimal event rank.
      validate_args: passed to TFP's base class.
      name: name scope.
    """
    parameters = dict(locals())
    self._make_steps = tuple(make_steps)
    if not self._make_steps:
      raise ValueError('Recompute: make_steps must hold at least one step.')
    self._event_ndims = event_ndims
    with tf.name_scope(name) as scope_name:
      super().__init__(
          forward_min_event_ndims=event_ndims,
          validate_args=validate_args,
          parameters=parameters,
          name=scope_name)

  def _chain(self):
    return tfp.bijectors.Chain([make() for make in reversed(self._make_steps)])

  def _forward(self, x):
    return self._chain().forward(x)

  def _inverse(self, y):
    return self._chain().inverse(y)

  def _forward_log_det_jacobian(self, x):
    return fused.forward_and_log_det(self._chain(), x, self._event_ndims)[1]

  def _inverse_log_det_jacobian(self, y):
    return fused.inverse_and_log_det(self._chain(), y, self._event_ndims)[1]

  def _step_forward(self, make, x):
    """One step's `(y, log_det)`, the log-det as one value per event."""
    y, log_det = fused.forward_and_log_det(make(), x, self._event_ndims)
    batch_shape = tf.shape(x)[:tf.rank(x) - self._event_ndims]
    return y, tf.broadcast_to(tf.cast(log_det, x.dtype), batch_shape)

  def forward_and_log_det(self, x):
    x = tf.convert_to_tensor(x)

    @tf.custom_gradient
    def run(x):
      y, log_det = x, 0.
      for make in self._make_steps:
        y, step_log_det = self._step_forward(make, y)
        log_det += step_log_det

      def gradient(dy, dlog_det, variables=None):
        variables = list(variables or [])
        if dlog_det is None:
          dlog_det = tf.zeros_like(log_det)
        contributions = [[] for _ in variables]
        output = y
        for make in reversed(self._make_steps):
          # After the later step's gradient: else a graph may rebuild every
          # step at once, as soon as it can, and hold them all.
          with tf.control_dependencies([dy]):
            step_input = tf.stop_gradient(make().inverse(output))
          with tf.GradientTape() as tape:
            tape.watch(step_input)
            step_output, step_log_det = self._step_forward(make, step_input)
          grads = tape.gradient(
              [step_output, step_log_det], [step_input] + variables,
              output_gradients=[dy, dlog_det])
          dy, output = grads[0], step_input
          for found, grad in zip(contributions, grads[1:]):
            if grad is not None:
              found.append(grad)
        return dy, [tf.add_n(found) if found else None
                    for found in contributions]

      return (y, log_det), gradient

    return run(x)
