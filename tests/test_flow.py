"""CIncFlow: exact likelihood and inverse of the whole flow, and training."""

import itertools
import logging
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import cinc_tfp
from cinc_tfp import data
from cinc_tfp import flow
from cinc_tfp import training
from tests import bijector_checks
from tests import flow_checks

IMAGE_SHAPE = flow_checks.IMAGE_SHAPE
tiny_flow = flow_checks.tiny_flow


@pytest.mark.parametrize('conv,coupling,reverse_channels', [
    *itertools.product(['cinc', 'emerging', '1x1'], ['quad', 'affine'],
                       [False]),
    ('cinc', 'affine', True), ('emerging', 'quad', True)])
def test_log_det_and_inverse_exact(conv, coupling, reverse_channels):
  model = tiny_flow(conv, coupling, dtype='float64',
                    reverse_channels=reverse_channels)
  x = tf.random.stateless_uniform((3,) + IMAGE_SHAPE, [3, 4], -0.5, 0.5,
                                  dtype=tf.float64)
  # The whole flow's log-det against slogdet of its 192 x 192 Jacobian.
  bijector = model.bijector()
  jacobian = bijector_checks.dense_jacobian(
      lambda image: bijector.forward(image[tf.newaxis])[0], x[0])
  _, log_det = model.encode_with_log_det(x[:1])
  np.testing.assert_allclose(log_det[0], tf.linalg.slogdet(jacobian)[1],
                             rtol=1e-9)
  # Exact inverses both ways, and plain TFP agrees with the fused path.
  z = model.encode(x)
  np.testing.assert_allclose(model.decode(z), x, rtol=1e-9, atol=1e-9)
  # Samples may leave [-0.5, 0.5), which encode refuses: the bijector.
  samples = model.sample(4, seed=5)
  np.testing.assert_allclose(model.decode(bijector.forward(samples)), samples,
                             rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(model.distribution().log_prob(x),
                             model.log_prob(x), rtol=1e-9)


def test_float32_flow_is_exact_too():
  model = tiny_flow()
  x = tf.random.stateless_uniform((3,) + IMAGE_SHAPE, [3, 4], -0.5, 0.5)
  np.testing.assert_allclose(model.decode(model.encode(x)), x, atol=1e-4)
  np.testing.assert_allclose(model.distribution().log_prob(x),
                             model.log_prob(x), rtol=1e-5)


@pytest.mark.parametrize('conv,jit', [('cinc', False), ('emerging', False),
                                      ('cinc', True)])
def test_traced_decode_stays_exact_after_the_weights_change(conv, jit):
  # A traced decode holds the inverse plans of the weights at trace time, an
  # eager one those a layer keeps: neither may use them once the weights
  # have moved on (also under XLA).
  model = tiny_flow(conv, dtype='float64')
  x = tf.random.stateless_uniform((3,) + IMAGE_SHAPE, [3, 4], -0.5, 0.5,
                                  dtype=tf.float64)
  decode = tf.function(model.decode, jit_compile=jit)
  for decoded in (decode, model.decode):  # Then eager, with plans made.
    np.testing.assert_allclose(decoded(model.encode(x)), x, rtol=1e-9,
                               atol=1e-9)
  for variable in model.trainable_variables:
    variable.assign_add(0.01 * tf.ones_like(variable))
  for decoded in (decode, model.decode):
    np.testing.assert_allclose(decoded(model.encode(x)), x, rtol=1e-9,
                               atol=1e-9)


def test_results_on_one_tensor_follow_the_weights():
  # TFP caches bijector results by input tensor, and bijectors on the same
  # variables share that cache: the flow's own methods must not serve a
  # result of the old weights for the same tensor, nor one without gradients.
  model = tiny_flow('cinc', coupling='affine', dtype='float64')
  x = tf.random.stateless_uniform((2,) + IMAGE_SHAPE, [5, 6], -0.5, 0.5,
                                  dtype=tf.float64)
  before = [model.log_prob(x), model.distribution().log_prob(x),
            model.encode(x)]
  for variable in model.trainable_variables:
    variable.assign_add(0.01 * tf.ones_like(variable))
  after = [model.log_prob(x), model.distribution().log_prob(x),
           model.encode(x)]
  fresh = [model.log_prob(tf.identity(x)),
           model.distribution().log_prob(tf.identity(x)),
           model.encode(tf.identity(x))]
  for old, new, reference in zip(before, after, fresh):
    np.testing.assert_allclose(new, reference, rtol=1e-12)
    assert np.max(np.abs(new - old)) > 1e-3
  with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(model.distribution().log_prob(x))
  assert all(gradient is not None for gradient in
             tape.gradient(loss, model.trainable_variables))


def test_making_the_plans_does_not_warn_of_retracing():
  # Each plan function traces once per kernel shape; TensorFlow warned of
  # retracing when they were closures of one function (it counts those
  # together), at the README's first `sample`.
  model = cinc_tfp.CIncFlow((16, 16, 1), levels=2, depth=4, width=4)
  model.initialize(tf.random.stateless_uniform([2, 16, 16, 1], [1, 1], -0.5,
                                               0.5))
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  logging.getLogger('tensorflow').addHandler(handler)
  try:
    model.sample(2, seed=0)
  finally:
    logging.getLogger('tensorflow').removeHandler(handler)
  assert not [r for r in records if 'retracing' in r.getMessage()]


@pytest.mark.parametrize('batch', [1, None])
def test_traced_decode_holds_the_plans_as_constants(batch):
  # A tensor a traced function captures costs it at every call: the plans
  # are constants of its graph, so it captures the weights only.
  model = tiny_flow()
  decode = tf.function(model.decode).get_concrete_function(
      tf.TensorSpec([batch, model.num_dims], tf.float64))
  assert decode.captured_inputs
  assert all(t.dtype == tf.resource for t in decode.captured_inputs)


def _conds(function, *args):
  """The `tf.cond`s in the graph of `function` traced on `args`."""
  graph = tf.function(function).get_concrete_function(*args).graph
  return sum(op.type in ('If', 'StatelessIf') for op in graph.get_operations())


@pytest.mark.parametrize('batch', [1, 2, None])
def test_decode_checks_the_plans_of_all_layers_at_once(batch):
  # One cond for the whole flow, none per layer; a batch of unknown size (a
  # served function's) has one more, for a batch of one image.
  z = tf.TensorSpec([batch, 8 * 8 * 3])
  conds = [_conds(cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=depth,
                                    width=4, conv=conv).decode, z)
           for depth in (1, 2) for conv in ('cinc', 'emerging')]
  assert conds == [1 if batch else 2] * 4


@pytest.mark.parametrize('conv', ['cinc', 'emerging', '1x1'])
def test_a_batch_in_split_batches_is_decoded_as_two_halves_of_one_trace(conv):
  # 9 images (halves of 4 and 5): two calls of one traced inverse, each half
  # with its own labels; as exact as the eager decode, which does not split.
  # A batch of unknown size takes the same branch, or that of one image.
  assert 9 in flow.SPLIT_BATCHES and 4 not in flow.SPLIT_BATCHES
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=2, width=8,
                            conv=conv, num_classes=3, dtype='float64')
  labels = tf.constant([0, 1, 2, 2, 1, 0, 0, 1, 2])
  x = tf.random.stateless_uniform((9,) + IMAGE_SHAPE, [5, 6], -0.5, 0.5,
                                  dtype=tf.float64)
  model.initialize(x)
  z = model.encode(x, labels)
  for batch in (9, 4, None):
    decode = tf.function(model.decode).get_concrete_function(
        tf.TensorSpec([batch, model.num_dims], tf.float64),
        tf.TensorSpec([batch], tf.int32))
    calls = [op.get_attr('f').name for op in decode.graph.get_operations()
             if op.type in ('PartitionedCall', 'StatefulPartitionedCall')]
    if batch is not None:
      assert len(calls) == (2 if batch == 9 else 1) and len(set(calls)) == 1
    for count in ((9, 4, 1) if batch is None else (batch,)):
      np.testing.assert_allclose(decode(z[:count], labels[:count]),
                                 x[:count], rtol=1e-9, atol=1e-9)
      np.testing.assert_allclose(decode(z[:count], labels[:count]),
                                 model.decode(z[:count], labels[:count]),
                                 rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('conv', ['cinc', '1x1'])
def test_a_batch_of_unknown_size_is_inverted_with_one_image_pinned(conv,
                                                                   monkeypatch):
  # Traced for any batch size, decode traces the inverse twice: once for
  # one image, with every shape known, and once for any other batch.
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=1, width=4,
                            conv=conv, dtype='float64')
  traced = []
  build = model._bijector

  class Recording:
    """The flow's bijector, recording the shape each trace inverts."""

    def __init__(self, *args, **kwargs):
      self._bijector = build(*args, **kwargs)

    def inverse(self, z):
      traced.append(tuple(z.shape))
      return self._bijector.inverse(z)

  monkeypatch.setattr(model, '_bijector', Recording)
  tf.function(model.decode).get_concrete_function(
      tf.TensorSpec([None, model.num_dims], tf.float64))
  assert sorted(traced, key=str) == [(1, 192), (None, 192)]


def test_a_decode_of_any_batch_size_compiles_under_xla_for_every_size():
  # XLA compiles both branches of each batch-size `tf.cond` for the batch
  # it is given: the one-image branch too, for an empty batch or for 3.
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=1, width=4,
                            num_classes=3, dtype='float64')
  x = tf.random.stateless_uniform((9,) + IMAGE_SHAPE, [5, 6], -0.5, 0.5,
                                  dtype=tf.float64)
  labels = tf.constant([0, 1, 2, 2, 1, 0, 0, 1, 2])
  model.initialize(x)
  z = model.encode(x, labels)
  decode = tf.function(model.decode, jit_compile=True, input_signature=[
      tf.TensorSpec([None, model.num_dims], tf.float64),
      tf.TensorSpec([None], tf.int32)])
  for count in (0, 1, 3, 9):
    np.testing.assert_allclose(decode(z[:count], labels[:count]), x[:count],
                               rtol=1e-9, atol=1e-9)


def test_sampling_is_reproducible_and_temperature_scales_the_latent():
  model = tiny_flow()
  first = model.sample(3, seed=7)
  np.testing.assert_array_equal(first, model.sample(3, seed=7))
  assert not np.array_equal(first, model.sample(3, seed=8))
  assert first.shape == (3,) + IMAGE_SHAPE
  # (Through the bijector: samples may leave [-0.5, 0.5), which encode
  # refuses.)
  encode = model.bijector().forward
  cold = encode(model.sample(3, temperature=0.5, seed=7))
  np.testing.assert_allclose(cold, 0.5 * encode(first), atol=1e-4)
  np.testing.assert_array_equal(
      model.decode(model.sample_latents(3, temperature=0.5, seed=7)),
      model.sample(3, temperature=0.5, seed=7))
  tiny = model.sample(2, temperature=1e-6, seed=7)
  np.testing.assert_allclose(encode(tiny), 0., atol=1e-4)
  # Any integer seed means the same; large ones do not wrap onto small ones.
  for same in (np.int64(7), tf.constant(7), tf.constant(7, tf.int64), [7, 0]):
    np.testing.assert_array_equal(model.sample(3, seed=same), first)
  assert not np.array_equal(model.sample(3, seed=2**31 + 7), first)
  with pytest.raises(ValueError, match='seed must be in'):
    model.sample(1, seed=-1)


def test_tensor_seeds_beyond_31_bits_do_not_wrap():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4)
  large = 2**31 + 7
  expected = model.sample(2, seed=large)
  np.testing.assert_array_equal(
      model.sample(2, seed=tf.constant(large, tf.int64)), expected)
  assert not np.array_equal(model.sample(2, seed=tf.constant(7, tf.int64)),
                            expected)


def test_bits_per_dim_of_a_5_bit_flow():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4, n_bits=5)
  x = tf.random.stateless_uniform((3,) + IMAGE_SHAPE, [5, 6], -0.5, 0.5)
  model.initialize(x)
  # -log2 p(x) per dimension, plus the log2 of the 2**5 bins per dimension.
  expected = -model.log_prob(x).numpy() / (192 * np.log(2.)) + 5
  np.testing.assert_allclose(model.bits_per_dim(x), expected, rtol=1e-6)


def test_config_round_trip_keeps_every_option():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4,
                            conv='emerging', coupling='affine', kernel_size=5,
                            scale='exp', corner='bottom_left', n_bits=5, seed=3,
                            recompute=True, reverse_channels=True,
                            name='flow5', dtype='float64')
  config = model.get_config()
  assert cinc_tfp.CIncFlow.from_config(config).get_config() == config
  assert {key: config[key] for key in ('n_bits', 'seed', 'scale', 'corner',
                                       'kernel_size', 'recompute',
                                       'reverse_channels', 'dtype')} == dict(
      n_bits=5, seed=3, scale='exp', corner='bottom_left', kernel_size=5,
      recompute=True, reverse_channels=True, dtype='float64')
  # A config written before the option builds the flow it described.
  del config['reverse_channels']
  assert not cinc_tfp.CIncFlow.from_config(config).reverse_channels


def test_reversed_channels_sit_between_each_convolution_and_its_coupling():
  plain = tiny_flow('cinc', 'affine', dtype='float64', reverse_channels=False)
  reversed_ = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=2, width=8,
                                conv='cinc', coupling='affine',
                                dtype='float64')  # Reversed by default.
  reversed_.set_weights(plain.get_weights())  # No weights of its own.
  x = tf.random.stateless_uniform((2,) + IMAGE_SHAPE, [3, 5], -0.5, 0.5,
                                  dtype=tf.float64)
  for index, (step, same_step) in enumerate(zip(reversed_.steps,
                                               plain.steps)):
    # Folded into the convolution: no bijector of its own.
    actnorm, conv, coupling = same_step.bijectors()
    assert [conv.reverse_channels for conv in (
        step.bijectors()[1], conv)] == [True, False]
    shape = reversed_.level_shapes[index // reversed_.depth]
    y = tf.random.stateless_normal((2,) + shape, [1, index],
                                   dtype=tf.float64)
    np.testing.assert_allclose(
        step.chain().forward(y),
        coupling.forward(conv.forward(actnorm.forward(y))[..., ::-1]),
        rtol=1e-12)
  assert not np.allclose(reversed_.log_prob(x), plain.log_prob(x))


def test_corners_cycle_and_every_step_has_its_own_initial_weights():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=5, width=4)
  corners = cinc_tfp.bijectors.CORNERS
  assert [conv.corner for conv in model.convs] == list(corners) + [corners[0]]
  fixed = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=2, width=4,
                            corner='bottom_right')
  assert [conv.corner for conv in fixed.convs] == ['bottom_right'] * 2
  kernels = [conv.kernel.numpy() for conv in model.convs]
  networks = [coupling.networks[0].hidden_in.kernel.numpy()
              for coupling in model.couplings]
  for weights in (kernels, networks):
    for a, b in itertools.combinations(weights, 2):
      assert not np.array_equal(a, b)


@pytest.mark.parametrize('conv', ['cinc', 'emerging', '1x1'])
def test_no_two_weights_share_a_seed(conv):
  # The default model's shape, with fewer and narrower steps.
  model = cinc_tfp.CIncFlow((32, 32, 3), levels=3, depth=8, width=4,
                            conv=conv, seed=0)
  seeds = [layer.seed for layer in model.convs]  # Emerging's splits in two.
  for coupling in model.couplings:
    for network in coupling.networks:
      seeds += [network.hidden_in.kernel_initializer.seed,
                network.hidden_mid.kernel_initializer.seed]
  assert len(seeds) == 3 * 8 * (1 + 2 * 3) and len(set(seeds)) == len(seeds)
  # So no two random initial weights start with the same draws.
  random = [weight.numpy().ravel() for weight in model.weights
            if 'kernel' in weight.path and np.std(weight.numpy()) > 0]
  heads = {tuple(np.round(w[:8] / np.std(w), 6)) for w in random}
  assert len(heads) == len(random)


def test_calling_the_model_gives_log_prob():
  model = tiny_flow()
  x = tf.random.stateless_uniform((4,) + IMAGE_SHAPE, [5, 6], -0.5, 0.5)
  expected = model.log_prob(x)
  np.testing.assert_allclose(model(x), expected, rtol=1e-6)
  np.testing.assert_allclose(model.predict(x, batch_size=2, verbose=0),
                             expected, rtol=1e-5)
  # A dataset of (images, labels) pairs, as fit takes it: labels ignored.
  pairs = tf.data.Dataset.from_tensor_slices((x, tf.range(4))).batch(2)
  np.testing.assert_allclose(model.predict(pairs, verbose=0), expected,
                             rtol=1e-5)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_whole_model_saves_and_loads_with_keras(tmp_path, dtype):
  model = tiny_flow(dtype=dtype, recompute=dtype == 'float64')
  model.save(tmp_path / 'flow.keras')
  loaded = keras.models.load_model(tmp_path / 'flow.keras')
  assert type(loaded) is cinc_tfp.CIncFlow and loaded.compute_dtype == dtype
  assert loaded.recompute == (dtype == 'float64')
  assert loaded.is_initialized
  for restored, saved in zip(loaded.weights, model.weights):
    assert restored.dtype == saved.dtype
    np.testing.assert_array_equal(restored.numpy(), saved.numpy())
  np.testing.assert_array_equal(loaded.sample(2, seed=3), model.sample(2, seed=3))


def test_a_compiled_model_loads_compiled_and_trains_on(tmp_path):
  x = tf.random.stateless_uniform((4,) + IMAGE_SHAPE, [7, 8], -0.5, 0.5)
  model = tiny_flow(coupling='affine')
  with pytest.raises(ValueError, match=r'You must call `compile\(\)`'):
    model.fit(x, epochs=1, batch_size=2, verbose=0)
  model.compile(optimizer=training.optimizer(
      'adamax', 1e-3, warmup_steps=2, ema=0.9))
  model.fit(x, epochs=1, batch_size=2, verbose=0)
  model.save(tmp_path / 'flow.keras')
  loaded = keras.models.load_model(tmp_path / 'flow.keras')
  assert loaded.optimizer.get_config() == model.optimizer.get_config()
  for restored, saved in zip(loaded.optimizer.variables,
                             model.optimizer.variables):
    np.testing.assert_array_equal(restored.numpy(), saved.numpy())
  model.fit(x, epochs=1, batch_size=2, verbose=0, shuffle=False)
  loaded.fit(x, epochs=1, batch_size=2, verbose=0, shuffle=False)
  for trained, saved in zip(loaded.weights, model.weights):
    np.testing.assert_allclose(trained.numpy(), saved.numpy(), rtol=1e-5,
                               atol=1e-6)


def test_fit_takes_a_generator():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=1, width=8)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))

  def batches():
    for i in range(6):  # Keras wants tuples from a generator: (x,).
      yield (tf.random.stateless_uniform((8,) + IMAGE_SHAPE, [i, 0], -0.5,
                                         0.5),)

  history = model.fit(batches(), steps_per_epoch=3, epochs=2, shuffle=False,
                      verbose=0)
  assert model.is_initialized and len(history.history['bits_per_dim']) == 2


def test_fit_builds_the_optimizer_so_the_step_is_traced_once():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  traces = []
  train_step = model.train_step
  model.train_step = lambda data: traces.append(1) or train_step(data)
  x = tf.random.stateless_uniform((8,) + IMAGE_SHAPE, [6, 0], -0.5, 0.5)
  model.fit(x.numpy(), batch_size=4, epochs=1, shuffle=False, verbose=0)
  assert model.optimizer.built and len(traces) == 1


def test_fit_trains_on_every_batch_of_a_generator():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4)
  model.compile(optimizer=keras.optimizers.SGD(1e-3))
  batches = ((tf.random.stateless_uniform((4,) + IMAGE_SHAPE, [i, 0], -0.5,
                                         0.5),) for i in range(3))
  steps = []
  count = keras.callbacks.LambdaCallback(
      on_train_batch_end=lambda batch, logs: steps.append(batch))
  model.fit(batches, steps_per_epoch=3, epochs=1, shuffle=False, verbose=0,
            callbacks=[count])
  # The first batch, taken for initialization, is trained on too.
  assert steps == [0, 1, 2]


def test_fit_initializes_on_the_first_batch_of_an_array():
  x = tf.random.stateless_uniform((16,) + IMAGE_SHAPE, [7, 0], -0.5, 0.5)
  expected = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4)
  expected.initialize(x[:8])
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4)
  model.compile(optimizer=keras.optimizers.SGD(0.))
  model.fit(x.numpy(), batch_size=8, epochs=1, shuffle=False, verbose=0)
  for name in ('log_scale', 'bias'):
    np.testing.assert_allclose(getattr(model.actnorms[0], name).numpy(),
                               getattr(expected.actnorms[0], name).numpy(),
                               rtol=1e-6)


def test_evaluate_reports_each_call_alone():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4)
  x = tf.random.stateless_uniform((8,) + IMAGE_SHAPE, [8, 0], -0.5, 0.5)
  model.initialize(x)
  model.compile(optimizer=keras.optimizers.SGD(0.))
  model.evaluate(x[:4], batch_size=4, verbose=0)
  second = model.evaluate(0.5 * x[4:], batch_size=4, verbose=0)
  assert second == pytest.approx(
      float(tf.reduce_mean(model.bits_per_dim(0.5 * x[4:]))), rel=1e-5)


def test_initialize_normalizes_the_first_batch_once():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=8)
  x = 0.3 * tf.random.stateless_uniform((32,) + IMAGE_SHAPE, [0, 1]) - 0.1
  model.initialize(x)
  assert model.is_initialized
  squeezed = tf.nn.space_to_depth(x, 2)
  y = model.actnorms[0].bijector().forward(squeezed)
  np.testing.assert_allclose(tf.reduce_mean(y, [0, 1, 2]), 0., atol=1e-5)
  np.testing.assert_allclose(tf.math.reduce_std(y, [0, 1, 2]), 1., rtol=1e-3)
  before = model.actnorms[0].log_scale.numpy()
  model.initialize(x * 3.)
  np.testing.assert_array_equal(model.actnorms[0].log_scale.numpy(), before)


def digits(image_size=8, batch_size=32):
  return data.pipeline(
      data.load_images(data.EMBEDDED, 'train', image_size=image_size),
      batch_size, shuffle=False, repeat=True, seed=0)


def test_fit_lowers_bits_per_dim_and_trains_every_weight():
  model = cinc_tfp.CIncFlow((8, 8, 1), levels=2, depth=2, width=16)
  model.compile(optimizer=keras.optimizers.Adam(2e-3))
  validation = digits().take(2)
  start = model.evaluate(validation, verbose=0, return_dict=True)
  before = [v.numpy().copy() for v in model.trainable_variables]
  history = model.fit(digits(), steps_per_epoch=15, epochs=2, shuffle=False,
                      verbose=0, validation_data=validation)
  assert set(history.history) == {'bits_per_dim', 'val_bits_per_dim'}
  assert history.history['val_bits_per_dim'][-1] < start['bits_per_dim'] - 0.3
  unchanged = [v.path for v, b in zip(model.trainable_variables, before)
               if np.array_equal(v.numpy(), b)]
  assert not unchanged
  # ActNorm weights are Keras-tracked and trained.
  assert any('actnorm' in v.path for v in model.trainable_variables)


@pytest.mark.parametrize('conv', ['cinc', 'emerging', '1x1'])
def test_fit_under_xla_matches_fit_without(conv):
  # `compile(jit_compile=True)`. The CInC flow trains under XLA with
  # recompute on, against stored activations without XLA (the recompute
  # tests below compare the two without XLA).
  x = tf.random.stateless_uniform((16,) + IMAGE_SHAPE, [4, 0], -0.5, 0.5)
  results = []
  for jit_compile in (False, True):
    model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=1, width=8,
                              conv=conv, coupling='quad', seed=3,
                              recompute=jit_compile and conv == 'cinc')
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  jit_compile=jit_compile)
    assert model.jit_compile == jit_compile
    history = model.fit(x, batch_size=8, epochs=2, shuffle=False, verbose=0)
    results.append((history.history['bits_per_dim'],
                    [v.numpy() for v in model.trainable_variables]))
  (loss, weights), (xla_loss, xla_weights) = results
  np.testing.assert_allclose(xla_loss, loss, rtol=1e-5)
  for xla_weight, weight in zip(xla_weights, weights):
    np.testing.assert_allclose(xla_weight, weight, rtol=1e-4, atol=1e-5)


def test_compile_takes_keras_auto_as_no_xla(monkeypatch):
  # Keras' 'auto' means XLA when a GPU is present (made to here), and XLA
  # drops the checks of the images and labels.
  monkeypatch.setattr(keras.Model, '_resolve_auto_jit_compile',
                      lambda self: True)
  plain = keras.Sequential([keras.Input([2]), keras.layers.Dense(1)])
  plain.compile(optimizer='sgd', loss='mse')
  assert plain.jit_compile is True
  model = tiny_flow()
  for arguments in ({}, {'jit_compile': 'auto'}):
    model.compile(optimizer='sgd', **arguments)
    assert model.jit_compile is False
  model.compile(optimizer='sgd', jit_compile=True)
  assert model.jit_compile is True


def _trained_pair(conv, coupling, dtype, **options):
  """A tiny flow after two Adam steps (eager: no tracing), and a flow with
  `recompute=True` and the same weights (both with `options`)."""
  stored = tiny_flow(conv, coupling, dtype=dtype, **options)
  optimizer = keras.optimizers.Adam(1e-2)
  for step in range(2):
    x = tf.random.stateless_uniform((8,) + IMAGE_SHAPE, [8, step], -0.5, 0.5,
                                    dtype=dtype)
    optimizer.apply_gradients(zip(_gradients(stored, x)[1],
                                  stored.trainable_variables))
  recomputed = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=2, width=8,
                                 conv=conv, coupling=coupling, dtype=dtype,
                                 recompute=True, **options)
  recomputed.set_weights(stored.get_weights())
  return stored, recomputed


def _gradients(model, x):
  with tf.GradientTape() as tape:
    bits = tf.reduce_mean(model.bits_per_dim(x))
  return bits, tape.gradient(bits, model.trainable_variables)


# float64 gradients at rebuilt inputs agree to rounding; float32 ones to the
# inverse's drift through a level's two steps: measured at most 9.5e-7 of
# each gradient's largest entry, for every conv and coupling.
RECOMPUTE_FLOAT32 = 1e-5


@pytest.mark.parametrize('dtype', ['float64', 'float32'])
@pytest.mark.parametrize('conv,coupling,reverse_channels', [
    *itertools.product(['cinc', 'emerging', '1x1'], ['quad', 'affine'],
                       [False]),
    ('cinc', 'quad', True)])
def test_recompute_gives_the_stored_gradients(conv, coupling, reverse_channels,
                                              dtype):
  stored, recomputed = _trained_pair(conv, coupling, dtype,
                                     reverse_channels=reverse_channels)
  x = tf.random.stateless_uniform((4,) + IMAGE_SHAPE, [9, 0], -0.5, 0.5,
                                  dtype=dtype)
  (bits, expected), (recomputed_bits, found) = [
      _gradients(model, x) for model in (stored, recomputed)]
  tolerance = 1e-8 if dtype == 'float64' else RECOMPUTE_FLOAT32
  np.testing.assert_allclose(recomputed_bits, bits, rtol=tolerance)
  assert len(found) == len(expected) and all(g is not None for g in found)
  for variable, want, got in zip(stored.trainable_variables, expected, found):
    scale = float(tf.reduce_max(tf.abs(want)))
    np.testing.assert_allclose(got, want, rtol=tolerance,
                               atol=tolerance * scale, err_msg=variable.path)


def test_fit_with_recompute_reaches_the_same_weights():
  x = tf.random.stateless_uniform((16,) + IMAGE_SHAPE, [10, 0], -0.5, 0.5,
                                  dtype=tf.float64)
  results = []
  for recompute in (False, True):
    model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=2, width=8,
                              seed=4, recompute=recompute, dtype='float64')
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x.numpy(), batch_size=8, epochs=1, shuffle=False,
                        verbose=0)
    results.append((history.history['bits_per_dim'],
                    [v.numpy() for v in model.trainable_variables]))
  (loss, weights), (recomputed_loss, recomputed_weights) = results
  np.testing.assert_allclose(recomputed_loss, loss, rtol=1e-8)
  for found, expected in zip(recomputed_weights, weights):
    np.testing.assert_allclose(found, expected, rtol=1e-8, atol=1e-10)


def _network_params(inputs, outputs, width):
  """Glow's coupling network: 3x3 conv, 1x1 conv, 3x3 conv, with biases."""
  return (9 * inputs * width + width) + (width * width + width) + (
      9 * width * outputs + outputs)


def test_summary_and_parameter_count(capsys):
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=1, width=8,
                            conv='1x1', coupling='affine')
  # Level 0 is 4x4x12, level 1 2x2x24: per step an ActNorm (2C), a 1x1
  # convolution (C*C LU factors, C log-scales) and an affine coupling's
  # network (C/2 in, C out); the split prior (3x3 conv, C/2 in, C out); the
  # top prior (2C).
  expected = sum(2 * c + c * c + c + _network_params(c // 2, c, 8)
                 for c in (12, 24)) + (9 * 6 * 12 + 12) + 2 * 24
  assert expected == 5620
  assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == (
      expected)
  model.summary()
  summary = capsys.readouterr().out
  assert 'level1_step0' in summary and 'Trainable params: 5,620' in summary
  conv = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=8).convs[0]
  assert conv.count_params() == 9 * 12**2 + 2 * 12
  # Every weight has its own path.
  paths = [v.path for v in model.weights]
  assert len(set(paths)) == len(paths)


@pytest.mark.parametrize('writer', ['tf.train.Checkpoint', 'keras'])
def test_weights_save_and_restore_exactly(tmp_path, writer):
  model = tiny_flow()
  fresh = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=2, width=8, seed=1)
  if writer == 'keras':
    model.save_weights(tmp_path / 'flow.weights.h5')
    fresh.load_weights(tmp_path / 'flow.weights.h5')
  else:
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt'))
    tf.train.Checkpoint(model=fresh).read(path).assert_consumed()
  assert len(fresh.weights) == len(model.weights)
  for restored, saved in zip(fresh.weights, model.weights):
    np.testing.assert_array_equal(restored.numpy(), saved.numpy())
  assert fresh.is_initialized


def fit_conditional(strategy, recompute):
  """Bits/dim of each epoch and the weights of a small class-conditional
  flow fitted under `strategy`, from fixed data and initial weights."""
  dataset = data.pipeline(
      data.load_images('embedded', 'train', image_size=8, labels=True), 16,
      shuffle=False, repeat=True, seed=0)
  with strategy.scope():
    model = cinc_tfp.CIncFlow((8, 8, 1), levels=2, depth=1, width=8,
                              recompute=recompute, num_classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
  history = model.fit(dataset, steps_per_epoch=4, epochs=2, verbose=0)
  return history.history['bits_per_dim'], [v.numpy() for v in model.weights]


# Two logical CPUs are set up before anything else runs in TensorFlow: in a
# process of their own.
MIRRORED_SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tests import test_flow
    loss, weights = test_flow.fit_conditional(
        tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']), recompute=True)
    np.savez(sys.argv[1], loss=loss, *weights)
''')


def test_mirrored_strategy_with_recompute_and_classes_matches_one_device(
    tmp_path):
  # Two replicas recomputing the activations against one device storing
  # them, both of a class-conditional flow (test_trainer runs two replicas
  # of a plain flow).
  out = tmp_path / 'two_replicas.npz'
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=os.pathsep.join([root,
                                         os.environ.get('PYTHONPATH', '')]))
  subprocess.run([sys.executable, '-c', MIRRORED_SCRIPT, str(out)],
                 check=True, env=env, cwd=root)
  loss, weights = fit_conditional(tf.distribute.get_strategy(),
                                  recompute=False)
  two = np.load(out)
  assert len(two.files) == len(weights) + 1
  np.testing.assert_allclose(loss, two['loss'], rtol=1e-5)
  for i, weight in enumerate(weights):
    np.testing.assert_allclose(weight, two[f'arr_{i}'], rtol=1e-4, atol=1e-5)


# Under MultiWorkerMirroredStrategy, with recompute: test_trainer.py runs
# the train command on a two-worker cluster with --recompute.


def test_bad_input_is_a_clear_error():
  with pytest.raises(ValueError, match=r'divisible by 2\*\*levels = 8'):
    cinc_tfp.CIncFlow((12, 12, 3), levels=3)
  with pytest.raises(ValueError, match='conv must be one of'):
    cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, conv='2x2')
  with pytest.raises(ValueError, match='coupling must be one of'):
    cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, coupling='triple')
  with pytest.raises(ValueError, match='depth must be a positive int'):
    cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=0)
  with pytest.raises(ValueError, match='kernel_size must be odd'):
    cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, kernel_size=4)
  with pytest.raises(ValueError, match=r'image_shape must be \(H, W, C\)'):
    cinc_tfp.CIncFlow((8, 8), levels=1)
  with pytest.raises(ValueError, match='scale must be one of'):
    cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, scale='bogus')
  with pytest.raises(ValueError, match='n_bits must be a positive int'):
    cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, n_bits=5.5)
  with pytest.raises(ValueError, match='n_bits must be in 1..8'):
    cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, n_bits=9)
  with pytest.raises(ValueError, match='seed must be an int'):
    cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, seed='a')
  with pytest.raises(ValueError, match='mixed precision'):
    cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, dtype='mixed_float16')
  for dtype in ('float16', 'bfloat16', 'int32'):
    with pytest.raises(ValueError, match=f'dtype {dtype} is not supported'):
      cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, dtype=dtype)
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4)
  with pytest.raises(ValueError, match=r'expected a batch of images of shape \[B, 8, 8, 3\]'):
    model.log_prob(tf.zeros([2, 8, 8, 1]))
  with pytest.raises(ValueError, match='expected dequantized float images'):
    model.log_prob(tf.zeros([2, 8, 8, 3], tf.uint8))
  with pytest.raises(ValueError, match=r'latent vectors of shape \[B, 192\]'):
    model.decode(tf.zeros([2, 191]))
  with pytest.raises(ValueError, match='empty batch of images'):
    model.log_prob(tf.zeros([0, 8, 8, 3]))
  with pytest.raises(ValueError, match='empty batch of latent vectors'):
    model.decode(tf.zeros([0, 192]))
  for method, shape, what in ((model.encode, [None, 8, 8, 3], 'images'),
                              (model.decode, [None, 192], 'latent vectors')):
    traced = tf.function(method, input_signature=[tf.TensorSpec(shape)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f'empty batch of {what}'):
      traced(tf.zeros([0] + shape[1:]))


@pytest.mark.parametrize('values', [
    [0.5], [-0.51], [255.], [float('nan')], [float('inf')]])
def test_images_outside_the_unit_interval_are_an_error(values):
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4)
  x = np.zeros([2, *IMAGE_SHAPE], np.float32)
  x[1, 3, 4, 0] = values[0]
  for method in (model.log_prob, model.bits_per_dim, model.encode):
    with pytest.raises(ValueError, match=r'in \[-0\.5, 0\.5\)'):
      method(x)
  # In a graph (as in a SavedModel) the same message, from TensorFlow.
  traced = tf.function(model.log_prob)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r'\[-0\.5, 0\.5\)'):
    traced(tf.constant(x))
  x[1, 3, 4, 0] = -0.5  # The interval's closed end is fine.
  assert np.isfinite(model.log_prob(x).numpy()).all()
  # So is float64 data just below 0.5, which float32 rounds to 0.5.
  x = x.astype(np.float64)
  x[1, 3, 4, 0] = 0.5 - 1e-9
  assert np.isfinite(model.log_prob(x).numpy()).all()


@pytest.mark.parametrize('n, temperature, words', [
    (-1, 0.7, 'n must be 1 or more, got -1'),
    (0, 0.7, 'n must be 1 or more, got 0'),
    (2, 0., 'temperature must be a finite number above 0, got 0.0'),
    (2, -1., 'temperature must be a finite number above 0'),
    (2, float('nan'), 'temperature must be a finite number above 0, got nan'),
    (2, float('inf'), 'temperature must be a finite number above 0'),
    (2.5, 0.7, 'n must be an int'),
])
def test_bad_sample_arguments_are_a_clear_error(n, temperature, words):
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4)
  with pytest.raises(ValueError, match=re.escape(words)):
    model.sample(n, temperature, seed=0)
  if isinstance(n, int):
    traced = tf.function(model.sample)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=re.escape(words.split(', got')[0])):
      traced(tf.constant(n), tf.constant(temperature), tf.constant([0, 0]))
  assert model.sample(1, 0.7, seed=0).shape == (1, *IMAGE_SHAPE)


def test_arguments_of_the_wrong_type_are_a_clear_error():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=1, depth=1, width=4)
  for temperature, words in (('hot', 'got string values'),
                             (True, 'got bool values'),
                             ([1., 2.], 'got shape (2,)')):
    with pytest.raises(ValueError, match=re.escape(
        f'temperature must be a number, {words}')):
      model.sample(1, temperature)
  for seed in ('a', 1.5, [1, 2, 3]):
    with pytest.raises(ValueError, match='seed must be an int'):
      model.sample(1, seed=seed)
  with pytest.raises(ValueError, match=re.escape(
      'latent vectors must be real numbers, got string values')):
    model.decode(tf.fill([1, 192], 'a'))


def test_decode_says_which_images_overflowed():
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=1, width=4)
  model.initialize(tf.random.uniform([4, *IMAGE_SHAPE], -0.5, 0.5, seed=1))
  z = np.zeros([3, model.num_dims], np.float32)
  z[1] = 3e38  # Too far out for float32 once scaled by the inverse.
  with pytest.warns(RuntimeWarning, match='1 of 3 images are not finite'):
    images = model.decode(z)
  np.testing.assert_array_equal(cinc_tfp.flow.finite_images(images),
                                [True, False, True])
