"""Invertible steps whose gradient recomputes activations from the inverse."""

import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp.bijectors import _base
from cinc_tfp.bijectors import fused

__all__ = ['Recompute', 'replay']


class Recompute(_base.NetworkBijector):
  """Bijectors applied in turn, differentiated without their activations.

  ```none
  y = f_n(... f_2(f_1(x))),   log|det J| = sum_i log|det J_i(x_{i-1})|.
  ```

  Each step `f_i` comes from a zero-argument callable of `make_steps` that
  builds it from the current weights (variables read when it is called).
  `forward_and_log_det` keeps only the output `y`: its gradient walks the
  steps backwards, as a RevNet's does (Gomez et al., 2017), one bijector of
  a step at a time (chains are walked through): it rebuilds the bijector's
  input with its exact inverse and differentiates its forward from there
  (`replay`). A coupling does both with one run of each network, since its
  inverse feeds them the same blocks as its forward; any other bijector is
  inverted, then run forward again. A training step so holds one bijector's
  activations at a time, whatever the number of steps, for about one more
  pass of the networks and one inverse of each convolution. The gradients
  are those of the plain chain at the rebuilt inputs, which differ from the
  true inputs by the inverse's rounding, compounded over the steps (a
  handful of float32 ulps per step: see the README).

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

  def _batch_log_det(self, log_det, x):
    """`log_det` as one value per event of `x`."""
    batch_shape = tf.shape(x)[:tf.rank(x) - self._event_ndims]
    return tf.broadcast_to(tf.cast(log_det, x.dtype), batch_shape)

  def forward_and_log_det(self, x):
    x = tf.convert_to_tensor(x)

    @tf.custom_gradient
    def run(x):
      y, log_det = x, 0.
      for make in self._make_steps:
        y, step_log_det = fused.forward_and_log_det(make(), y,
                                                    self._event_ndims)
        log_det += self._batch_log_det(step_log_det, y)

      def gradient(dy, dlog_det, variables=None):
        variables = list(variables or [])
        if dlog_det is None:
          dlog_det = tf.zeros_like(log_det)
        contributions = [[] for _ in variables]
        output = y
        for make in reversed(self._make_steps):
          # One tape per step, which sees `make` read the weights.
          with tf.GradientTape(persistent=True) as tape:
            for part, event_ndims in reversed(
                fused.parts(make(), self._event_ndims)):
              # After the later part's gradient: else a graph may rebuild
              # every step at once, as soon as it can, and hold them all.
              with tf.control_dependencies([dy]):
                output = tf.identity(output)
              inputs, assemble, part_output, part_log_det = replay(
                  part, output, tape, event_ndims)
              part_log_det = self._batch_log_det(part_log_det, output)
              with tape.stop_recording():
                grads = tape.gradient([part_output, part_log_det],
                                      inputs + variables,
                                      output_gradients=[dy, dlog_det])
              dy = assemble([tf.zeros_like(t) if g is None else g
                             for t, g in zip(inputs, grads)])
              output = assemble(inputs)
              for found, grad in zip(contributions, grads[len(inputs):]):
                if grad is not None:
                  found.append(grad)
        return dy, [tf.add_n(found) if found else None
                    for found in contributions]

      return (y, log_det), gradient

    return run(x)


def replay(bijector, y, tape, event_ndims):
  """Rebuilds `x = bijector.inverse(y)` and runs the forward from it under
  `tape`, for the forward's gradient at `x` without its stored activations.

  Returns `(inputs, assemble, y_again, log_det)`: `inputs` are tensors that
  `tape` watches (`x` in parts) and `assemble` puts a list like them together
  as one tensor like `x`; the forward's gradients with respect to `x` are
  the gradients of `y_again` and `log_det` with respect to `inputs`,
  assembled. A bijector with a `replay_forward(y, tape)` method of this
  contract (the couplings: each network runs once for both directions) does
  it itself; any other is inverted without recording, then its forward is
  recorded.
  """
  if (hasattr(bijector, 'replay_forward') and
      event_ndims == bijector.forward_min_event_ndims):
    return bijector.replay_forward(y, tape)
  with tape.stop_recording():
    x = tf.stop_gradient(bijector.inverse(y))
  tape.watch(x)
  y_again, log_det = fused.forward_and_log_det(bijector, x, event_ndims)
  return [x], lambda parts: parts[0], y_again, log_det
