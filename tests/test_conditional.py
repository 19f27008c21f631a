"""Class-conditional CIncFlow: exact with labels, classification, training."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import cinc_tfp
from cinc_tfp import data
from tests import bijector_checks

IMAGE_SHAPE = (8, 8, 3)
CLASSES = 3


def images(count, seed=3, dtype=tf.float64):
  return tf.random.stateless_uniform((count,) + IMAGE_SHAPE, [seed, 4], -0.5,
                                     0.5, dtype=dtype)


def conditional_flow(conv='cinc', coupling='quad', dtype='float64',
                     **kwargs):
  """A conditional flow at 8x8x3, initialized on data and moved off its
  trivial start, class offsets included."""
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=1, width=8, conv=conv,
                            coupling=coupling, dtype=dtype,
                            num_classes=CLASSES, **kwargs)
  model.initialize(images(16, seed=0, dtype=dtype))
  generator = tf.random.Generator.from_seed(2)
  for variable in model.trainable_variables:
    variable.assign_add(0.05 * generator.normal(variable.shape, dtype=dtype))
  return model


@pytest.mark.parametrize('conv,coupling', list(itertools.product(
    ['cinc', 'emerging', '1x1'], ['quad', 'affine'])))
def test_log_det_and_inverse_exact_with_labels(conv, coupling):
  model = conditional_flow(conv, coupling)
  x, labels = images(3), tf.constant([2, 0, 1])
  _, log_det = model.encode_with_log_det(x, labels)
  for i in (0, 1):
    bijector = model.bijector(labels=labels[i])
    jacobian = bijector_checks.dense_jacobian(
        lambda image, b=bijector: b.forward(image[tf.newaxis])[0], x[i])
    np.testing.assert_allclose(log_det[i], tf.linalg.slogdet(jacobian)[1],
                               rtol=1e-9)
  z = model.encode(x, labels)
  np.testing.assert_allclose(model.decode(z, labels), x, rtol=1e-9, atol=1e-9)
  samples = model.sample(3, seed=5, labels=labels)
  np.testing.assert_allclose(
      model.decode(model.bijector(labels=labels).forward(samples), labels),
      samples, rtol=1e-9, atol=1e-9)
  # A plain TFP distribution of batch shape [3], one class per member.
  distribution = model.distribution(labels)
  # (TFP builds the non-CompositeTensor base class of TransformedDistribution.)
  assert issubclass(tfp.distributions.TransformedDistribution,
                    type(distribution))
  assert distribution.batch_shape == [3]
  np.testing.assert_allclose(distribution.log_prob(x),
                             model.log_prob(x, labels), rtol=1e-9)


def test_float32_conditional_flow_is_exact_too():
  model = conditional_flow(dtype='float32')
  x, labels = images(3, dtype=tf.float32), tf.constant([2, 0, 1])
  np.testing.assert_allclose(model.decode(model.encode(x, labels), labels), x,
                             atol=1e-4)
  np.testing.assert_allclose(model.distribution(labels).log_prob(x),
                             model.log_prob(x, labels), rtol=1e-5)


def test_labels_change_log_prob_and_samples():
  model = conditional_flow()
  x = images(2)
  log_probs = [model.log_prob(x, label).numpy() for label in range(CLASSES)]
  assert np.abs(log_probs[0] - log_probs[1]).min() > 1e-3
  samples = [model.sample(2, seed=1, labels=label) for label in (0, 1)]
  assert np.abs(samples[0] - samples[1]).min() > 0.
  # One label for all is that label for each.
  np.testing.assert_allclose(log_probs[1], model.log_prob(x, [1, 1]))


def test_classify_is_bayes_rule_from_one_pass():
  model = conditional_flow()
  x = images(4)
  each = np.stack([model.log_prob(x, label).numpy()
                   for label in range(CLASSES)], axis=1)
  np.testing.assert_allclose(model.class_log_likelihoods(x), each, rtol=1e-10)
  expected = each - np.log(np.exp(each - each.max(1, keepdims=True)).sum(
      1, keepdims=True)) - each.max(1, keepdims=True)
  np.testing.assert_allclose(model.classify(x), expected, rtol=1e-9)
  log_prior = np.log([0.7, 0.2, 0.1])
  joint = each + log_prior
  np.testing.assert_allclose(
      model.classify(x, log_prior),
      joint - np.log(np.exp(joint).sum(1, keepdims=True)), rtol=1e-9)


def test_without_classes_the_model_is_unchanged():
  plain = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=1, width=8)
  conditional = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=1, width=8,
                                  num_classes=CLASSES)
  shared = [w for w in conditional.weights if 'class_offsets' not in w.path]
  assert [w.path for w in plain.weights] == [w.path for w in shared]
  assert len(conditional.weights) == len(plain.weights) + 2  # top, level 0
  for a, b in zip(plain.weights, shared):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  x = images(4, dtype=tf.float32)
  plain.initialize(x)
  conditional.initialize(x)
  # The offsets start at zero: every class starts as the plain model.
  np.testing.assert_allclose(conditional.log_prob(x, 2), plain.log_prob(x))


def test_fit_on_image_label_pairs_and_evaluate_accuracy():
  dataset = data.pipeline(
      data.load_images(data.EMBEDDED, 'train', image_size=8, labels=True), 32,
      repeat=True, seed=0)
  model = cinc_tfp.CIncFlow((8, 8, 1), levels=2, depth=1, width=8,
                            num_classes=10)
  model.compile(optimizer=keras.optimizers.Adam(1e-2))
  offsets = [v for v in model.trainable_variables if 'class_offsets' in v.path]
  history = model.fit(dataset, steps_per_epoch=20, epochs=1, verbose=0)
  assert np.isfinite(history.history['bits_per_dim']).all()
  assert all(np.abs(v.numpy()).max() > 0. for v in offsets)
  test = data.pipeline(
      data.load_images(data.EMBEDDED, 'test', image_size=8, labels=True), 100,
      shuffle=False)
  result = model.evaluate(test, return_dict=True, verbose=0)
  x, labels = next(iter(test))
  expected = np.mean(np.argmax(model.classify(x), -1) == labels.numpy())
  assert set(result) == {'bits_per_dim', 'accuracy'}
  assert 0. <= result['accuracy'] <= 1.
  # Arrays work too, and the accuracy is that of classify.
  one = model.evaluate(x, labels, batch_size=100, return_dict=True, verbose=0)
  np.testing.assert_allclose(one['accuracy'], expected, rtol=1e-6)
  np.testing.assert_allclose(
      one['bits_per_dim'], np.mean(model.bits_per_dim(x, labels)), rtol=1e-5)


def test_config_and_keras_saving_keep_the_classes(tmp_path):
  model = conditional_flow(dtype='float32')
  assert model.get_config()['num_classes'] == CLASSES
  path = tmp_path / 'flow.keras'
  model.save(path)
  loaded = keras.saving.load_model(path)
  x = images(2, dtype=tf.float32)
  assert loaded.num_classes == CLASSES
  np.testing.assert_allclose(loaded.log_prob(x, [0, 2]),
                             model.log_prob(x, [0, 2]), rtol=1e-6)


def test_bad_labels_are_a_clear_error():
  model = conditional_flow(dtype='float32')
  x = images(2, dtype=tf.float32)
  cases = [
      (None, 'class-conditional .*pass labels'),
      ([0.5, 1.], 'labels must be int class indices in 0..2'),
      ([0, 3], r'labels must be in 0\.\.2 \(num_classes=3\), got \[0, 3\]'),
      ([-1, 0], r'labels must be in 0\.\.2'),
      ([0, 1, 2], r'one label per image \(\[2\]\) or one for all'),
      ([[0, 1]], r'one label per image'),
  ]
  for labels, message in cases:
    with pytest.raises(ValueError, match=message):
      model.log_prob(x, labels)
  plain = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=1, width=8)
  with pytest.raises(ValueError, match='takes no labels'):
    plain.log_prob(x, [0, 1])
  with pytest.raises(ValueError, match=r'takes \(images, labels\) pairs'):
    model.compile(optimizer='sgd')
    model.fit(x, epochs=1, verbose=0)
  with pytest.raises(ValueError, match='has no classes'):
    plain.classify(x)
  with pytest.raises(ValueError, match=r'log_prior must have shape \[3\]'):
    model.classify(x, [0., 0.])
  # In a graph (a SavedModel), out-of-range labels fail at run time.
  log_prob = tf.function(model.log_prob, input_signature=[
      tf.TensorSpec([None, *IMAGE_SHAPE]), tf.TensorSpec([None], tf.int32)])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r'in 0\.\.2'):
    log_prob(x, tf.constant([0, 5]))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='one label per image'):
    log_prob(x, tf.constant([0, 1, 2]))
