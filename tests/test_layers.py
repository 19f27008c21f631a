"""Keras layers owning the bijectors' weights: training, data init, checkpoints."""

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import bijectors
from cinc_tfp import config
from cinc_tfp import layers


@pytest.mark.parametrize('kind', config.CONVS)
def test_conv_bijector_is_built_from_the_layer_weights(kind):
  layer = layers.InvertibleConvLayer(kind, 4, seed=1, name=f'conv_{kind}')
  x = tf.random.stateless_normal([2, 3, 3, 4], [0, 1])
  with tf.GradientTape() as tape:
    bijector = layer.bijector()
    loss = tf.reduce_sum(bijector.forward(x)**2) - tf.reduce_sum(
        bijector.forward_log_det_jacobian(x))
  gradients = tape.gradient(loss, layer.trainable_weights)
  assert layer.trainable_weights and all(
      g is not None and np.any(g.numpy() != 0) for g in gradients)
  # A weight update shows in the next bijector.
  before = bijector.forward(x)
  for weight in layer.trainable_weights:
    weight.assign_add(0.1 * tf.ones_like(weight))
  assert not np.allclose(layer.bijector().forward(x), before)


@pytest.mark.parametrize('kind', ['cinc', 'emerging'])
def test_conv_kernels_start_small_random_and_seeded(kind):

  def kernels(seed):
    layer = layers.InvertibleConvLayer(kind, 8, seed=seed, name=f'conv_{kind}')
    return [w.numpy() for w in layer.trainable_weights if 'kernel' in w.name]

  first = kernels(1)
  assert len(first) == (1 if kind == 'cinc' else 2)
  for kernel, again, other in zip(first, kernels(1), kernels(2)):
    np.testing.assert_array_equal(kernel, again)
    assert not np.array_equal(kernel, other)
    assert 0.04 < kernel.std() < 0.06  # N(0, 0.05**2)
  if kind == 'emerging':
    assert not np.array_equal(*first)


def test_actnorm_layer_initializes_once_and_keeps_the_flag_as_a_weight():
  layer = layers.ActNormLayer(3, name='actnorm')
  x = tf.constant(2. + 3. * np.random.default_rng(0).normal(size=[8, 4, 4, 3]),
                  tf.float32)
  y = layer.bijector(data_init=True).forward(x)
  np.testing.assert_allclose(tf.reduce_mean(y, [0, 1, 2]), 0., atol=1e-5)
  assert bool(layer.initialized.numpy())
  assert any(w is layer.initialized for w in layer.non_trainable_weights)
  log_scale = layer.log_scale.numpy()
  layer.bijector(data_init=True).forward(5. * x)
  np.testing.assert_array_equal(layer.log_scale.numpy(), log_scale)
  prior = layers.ActNormLayer(3, data_init=False, name='prior')
  assert not hasattr(prior, 'initialized')


def test_coupling_layer_networks_and_weight_paths():
  quad = layers.CouplingLayer('quad', (4, 4, 8), width=4, name='quad')
  affine = layers.CouplingLayer('affine', (4, 4, 8), width=4, name='affine')
  assert len(quad.networks) == 3 and len(affine.networks) == 1
  assert isinstance(quad.bijector(), bijectors.QuadCoupling)
  paths = [w.path for w in quad.weights + affine.weights]
  assert len(set(paths)) == len(paths) and paths[0].startswith('quad/')


def test_coupling_layer_checkpoint_round_trip(tmp_path):
  saved = layers.CouplingLayer('quad', (4, 4, 8), width=4, seed=1, name='c')
  for weight in saved.weights:
    weight.assign(tf.random.stateless_normal(weight.shape, [1, 2]))
  path = tf.train.Checkpoint(layer=saved).write(str(tmp_path / 'ckpt'))
  restored = layers.CouplingLayer('quad', (4, 4, 8), width=4, seed=2, name='c')
  tf.train.Checkpoint(layer=restored).read(path).assert_consumed()
  for a, b in zip(restored.weights, saved.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_arguments_are_clear_errors():
  with pytest.raises(ValueError, match='conv must be one of'):
    layers.InvertibleConvLayer('3x3', 4)
  with pytest.raises(ValueError, match='coupling must be one of'):
    layers.CouplingLayer('triple', (4, 4, 8), 4)
  with pytest.raises(ValueError, match='quad coupling splits channels into 4'):
    layers.CouplingLayer('quad', (4, 4, 6), 4)


def test_flow_step_holds_its_three_layers_and_their_bijectors():
  step = layers.FlowStep('cinc', 'affine', (4, 4, 8), width=4, seed=3,
                         name='step')
  kinds = [type(b) for b in step.bijectors()]
  assert kinds == [bijectors.ActNorm, bijectors.CIncConv2D,
                   bijectors.AffineCoupling]
  paths = [w.path for w in step.weights]
  assert len(set(paths)) == len(paths)
  assert all(path.startswith('step/') for path in paths)
  other = layers.FlowStep('cinc', 'affine', (4, 4, 8), width=4, seed=4,
                          name='step')
  assert not np.array_equal(step.conv.kernel.numpy(), other.conv.kernel.numpy())
