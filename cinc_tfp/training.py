"""The paper's training recipe: Adamax, linear warm-up, Polyak averaging.

`optimizer(...)` returns a Keras optimizer for `CIncFlow.compile`. With
`ema > 0` it keeps an exponential moving average of the weights, but unlike
Keras' own optimizers it never writes the average into the model by itself
(Keras does so at the end of every `fit`): training can go on from the raw
weights across `fit` calls and resumed runs, and `use_averaged_weights`
swaps the average in once, when training is over.
"""

import math

import keras
import tensorflow as tf

__all__ = ['OPTIMIZERS', 'RECIPE', 'WarmUp', 'optimizer',
           'use_averaged_weights']


@keras.saving.register_keras_serializable('cinc_tfp')
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from `rate / steps` to `rate` over `steps` steps, then
  constant: the learning rate at step `t` is `rate * min(1, (t + 1) / steps)`."""

  def __init__(self, rate, steps):
    self.rate = rate
    self.steps = steps

  def __call__(self, step):
    if not self.steps:
      return tf.constant(self.rate, tf.float32)
    fraction = tf.cast(step + 1, tf.float32) / self.steps
    return self.rate * tf.minimum(1.0, fraction)

  def get_config(self):
    return {'rate': self.rate, 'steps': self.steps}


class _KeepsRawWeights:
  """Makes Keras' end-of-`fit` overwrite with the averages a no-op, and
  offers it as `swap_in_averages` instead."""

  def finalize_variable_values(self, var_list):
    del var_list

  def swap_in_averages(self, var_list):
    super().finalize_variable_values(var_list)  # pylint: disable=no-member


@keras.saving.register_keras_serializable('cinc_tfp')
class Adamax(_KeepsRawWeights, keras.optimizers.Adamax):
  """Adamax whose averaged weights are swapped in only on request."""


@keras.saving.register_keras_serializable('cinc_tfp')
class Adam(_KeepsRawWeights, keras.optimizers.Adam):
  """Adam whose averaged weights are swapped in only on request."""


_OPTIMIZER_CLASSES = {'adamax': Adamax, 'adam': Adam}
OPTIMIZERS = tuple(_OPTIMIZER_CLASSES)
# The optimizer options (as a run's config.json holds them) that
# `train.train` and the quality benchmark default to: sized for runs of a few
# thousand steps (the paper's long runs: Adamax at 1e-3, an EMA of 0.999).
RECIPE = dict(optimizer='adamax', learning_rate=3e-3, warmup_steps=200,
              ema=0.99)


def optimizer(name='adamax', learning_rate=1e-3, warmup_steps=0, ema=0.,
              variables=None):
  """Adamax (the paper's) or Adam with warm-up and optional Polyak averaging.

  Args:
    name: 'adamax' or 'adam'.
    learning_rate: the rate after warm-up.
    warmup_steps: steps of linear warm-up (`WarmUp`); 0 for none.
    ema: momentum of the moving average of the weights, in `[0, 1)`; 0 keeps
      none. (Keras' average starts at the first step's weights, without
      bias correction.)
    variables: if given, the optimizer is built for them, so that a
      checkpoint restores its slots at once.
  """
  if name not in _OPTIMIZER_CLASSES:
    raise ValueError(f'optimizer must be one of {OPTIMIZERS}, got {name!r}.')
  if not (math.isfinite(learning_rate) and learning_rate >= 0):
    raise ValueError(
        f'learning_rate must be a finite number >= 0, got {learning_rate!r}.')
  if isinstance(warmup_steps, bool) or not isinstance(
      warmup_steps, int) or warmup_steps < 0:
    raise ValueError(
        f'warmup_steps must be an int >= 0, got {warmup_steps!r}.')
  if not 0 <= ema < 1:
    raise ValueError(f'ema must be in [0, 1), got {ema!r}.')
  result = _OPTIMIZER_CLASSES[name](
      learning_rate=WarmUp(learning_rate, warmup_steps),
      use_ema=ema > 0, ema_momentum=ema if ema > 0 else 0.99)
  if variables is not None:
    result.build(variables)
  return result


def use_averaged_weights(model, optimizer_):
  """Overwrites `model`'s trainable weights with their moving averages, if
  `optimizer_` keeps them. Training checkpoints must not be saved after this:
  they hold the raw weights."""
  if isinstance(optimizer_, _KeepsRawWeights):
    optimizer_.swap_in_averages(model.trainable_variables)
