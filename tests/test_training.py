"""The training recipe: warm-up schedule, Polyak averages kept apart."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import training


def test_warm_up_is_linear_then_constant():
  schedule = training.WarmUp(0.1, 4)
  rates = [float(schedule(step)) for step in range(6)]
  np.testing.assert_allclose(rates, [0.025, 0.05, 0.075, 0.1, 0.1, 0.1],
                             rtol=1e-6)
  assert float(training.WarmUp(0.1, 0)(0)) == pytest.approx(0.1)
  assert training.WarmUp.from_config(schedule.get_config()).steps == 4


@pytest.mark.parametrize('name', training.OPTIMIZERS)
def test_moving_average_is_kept_apart_until_swapped_in(name):
  layer = keras.layers.Dense(2)
  layer.build((None, 3))
  variables = layer.trainable_variables
  optimizer = training.optimizer(name, 0.1, ema=0.5, variables=variables)
  raw = []
  for step in range(3):
    gradients = [tf.fill(v.shape, float(step + 1)) for v in variables]
    optimizer.apply_gradients(zip(gradients, variables))
    raw.append([v.numpy().copy() for v in variables])
  # Keras' average: the first step's weights, then momentum 0.5.
  expected = raw[0]
  for weights in raw[1:]:
    expected = [0.5 * e + 0.5 * w for e, w in zip(expected, weights)]
  # The end of a fit leaves the raw weights in place ...
  optimizer.finalize_variable_values(variables)
  for variable, weights in zip(variables, raw[-1]):
    np.testing.assert_array_equal(variable.numpy(), weights)
  # ... until the averages are asked for.
  training.use_averaged_weights(layer, optimizer)
  for variable, average in zip(variables, expected):
    np.testing.assert_allclose(variable.numpy(), average, rtol=1e-6)


def test_without_ema_use_averaged_weights_changes_nothing():
  layer = keras.layers.Dense(2)
  layer.build((None, 3))
  optimizer = training.optimizer('adamax', 0.1,
                                 variables=layer.trainable_variables)
  before = [v.numpy().copy() for v in layer.trainable_variables]
  training.use_averaged_weights(layer, optimizer)
  for variable, weights in zip(layer.trainable_variables, before):
    np.testing.assert_array_equal(variable.numpy(), weights)


def test_optimizer_built_for_variables_restores_its_state_at_once(tmp_path):

  def dense_and_optimizer():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    return layer, training.optimizer('adam', 0.1, ema=0.5,
                                     variables=layer.trainable_variables)

  layer, optimizer = dense_and_optimizer()
  for step in range(2):
    gradients = [tf.fill(v.shape, float(step + 1))
                 for v in layer.trainable_variables]
    optimizer.apply_gradients(zip(gradients, layer.trainable_variables))
  path = tf.train.Checkpoint(layer=layer, optimizer=optimizer).write(
      str(tmp_path / 'ckpt'))
  # A fresh optimizer takes every slot and average from the checkpoint, before
  # any step: so that the averages can be swapped in after a restore.
  fresh_layer, fresh = dense_and_optimizer()
  tf.train.Checkpoint(layer=fresh_layer, optimizer=fresh).read(
      path).assert_consumed()
  assert len(fresh.variables) == len(optimizer.variables) > 1
  for restored, saved in zip(fresh.variables, optimizer.variables):
    np.testing.assert_array_equal(restored.numpy(), saved.numpy())
  training.use_averaged_weights(fresh_layer, fresh)
  training.use_averaged_weights(layer, optimizer)
  for restored, saved in zip(fresh_layer.weights, layer.weights):
    np.testing.assert_array_equal(restored.numpy(), saved.numpy())


@pytest.mark.parametrize('kwargs, words', [
    (dict(name='sgd'), 'optimizer must be one of'),
    (dict(learning_rate=float('nan')), 'learning_rate must be'),
    (dict(learning_rate=-1e-3), 'learning_rate must be'),
    (dict(warmup_steps=-1), 'warmup_steps must be'),
    (dict(ema=1.), r'ema must be in \[0, 1\)'),
])
def test_bad_arguments_are_clear_errors(kwargs, words):
  with pytest.raises(ValueError, match=words):
    training.optimizer(**kwargs)
