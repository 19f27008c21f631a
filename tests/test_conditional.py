"""Class-conditional CIncFlow: exact with labels, classification, training."""

import itertools
import re
import subprocess
import sys
import textwrap

from absl import flags
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import cinc_tfp
from cinc_tfp import data
from cinc_tfp import run as run_lib
from tests import bijector_checks
from tests import flow_checks
from tests import train_helpers as helpers
from train import common
from train import evaluate
from train import sample
from train import train

IMAGE_SHAPE = flow_checks.IMAGE_SHAPE
CLASSES = 3


def images(count, seed=3, dtype=tf.float64):
  return tf.random.stateless_uniform((count,) + IMAGE_SHAPE, [seed, 4], -0.5,
                                     0.5, dtype=dtype)


def conditional_flow(conv='cinc', coupling='quad', dtype='float64'):
  """A conditional flow at 8x8x3, initialized on data and moved off its
  trivial start, class offsets included."""
  return flow_checks.tiny_flow(conv, coupling, dtype, num_classes=CLASSES)


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
  history = model.fit(dataset, steps_per_epoch=20, epochs=1, shuffle=False,
                      verbose=0)
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
  # predict takes what evaluate takes: the labelled dataset, or arrays.
  expected = model.log_prob(x, labels)
  # Keras' multi-input form too, with a target that predict drops.
  inputs_and_target = test.take(1).map(lambda x, y: ((x, y), y))
  for given in (test.take(1), (x, labels), inputs_and_target):
    np.testing.assert_allclose(model.predict(given, batch_size=100, verbose=0),
                               expected, rtol=1e-5)


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


# The command lines and the SavedModel.


@pytest.fixture(scope='module')
def conditional_run(tmp_path_factory):
  """A 6-step `--conditional` run of the tiny flow on the embedded digits."""
  model_dir = tmp_path_factory.mktemp('conditional') / 'run'
  result = train.run(helpers.parse(
      train.define_flags, f'--model_dir={model_dir}', *helpers.TINY,
      '--conditional', '--steps=6', '--steps_per_epoch=3'))
  return model_dir, result


def test_train_evaluate_and_sample_a_conditional_run(conditional_run,
                                                     tmp_path, capsys):
  model_dir, result = conditional_run
  config = run_lib.RunDirectory(model_dir).read_config()
  assert config['num_classes'] == 10
  assert 0. <= result['test_accuracy'] <= 1.
  for source in (f'--model_dir={model_dir}',
                 f'--saved_model={model_dir / "saved_model"}'):
    split, metrics = evaluate.run(helpers.parse(evaluate.define_flags,
                                                source))
    assert split == 'test'
    assert metrics['bits_per_dim'] == pytest.approx(
        result['test_bits_per_dim'], abs=1e-4)
    assert metrics['accuracy'] == pytest.approx(result['test_accuracy'])
  printed = capsys.readouterr().out.strip().splitlines()
  assert printed[-2].startswith('test accuracy: ')
  assert printed[-1].startswith('test bits/dim: ')
  # One row per class, and chosen classes.
  grid = sample.run(helpers.parse(
      sample.define_flags, f'--model_dir={model_dir}', '--per_class=3',
      f'--output={tmp_path / "classes.png"}'))
  assert grid.shape == (10 * 8, 3 * 8, 1)
  chosen = sample.run(helpers.parse(
      sample.define_flags, f'--saved_model={model_dir / "saved_model"}',
      '--labels=3,3,7', f'--output={tmp_path / "chosen.png"}'))
  assert chosen.shape == (8, 3 * 8, 1)  # 3 images: one row
  trained = run_lib.TrainedFlow.from_run_directory(model_dir)
  ones = trained.sample(3, 0.7, [0, 0], labels=3)
  np.testing.assert_array_equal(
      ones, trained.sample(3, 0.7, [0, 0], labels=[3, 3, 3]))
  row = sample.run(helpers.parse(
      sample.define_flags, f'--model_dir={model_dir}', '--interpolate=0,1',
      '--labels=7,2', '--steps=2', f'--output={tmp_path / "row.png"}'))
  assert row.shape == (8, 4 * 8, 1)


def test_bad_labels_of_a_conditional_run_end_sample_with_one_line(
    conditional_run, tmp_path):
  model_dir, _ = conditional_run
  result = helpers.run('sample', f'--model_dir={model_dir}',
                       f'--output={tmp_path / "x.png"}', '--labels=3,12')
  helpers.assert_fails_with_one_line(result,
                                     'Labels must be in 0..9, got [3, 12]')


@pytest.mark.parametrize('args, error, words', [
    (('--interpolate=0,1',), common.TrainError,
     "give the two images' classes as --labels"),
    (('--labels=a',), flags.Error, '--labels must be class indices'),
])
def test_bad_sample_flags_of_a_conditional_run(conditional_run, tmp_path,
                                               args, error, words):
  """Errors `common.report_errors` prints as one line (see above)."""
  model_dir, _ = conditional_run
  with pytest.raises(error, match=re.escape(words)):
    sample.run(helpers.parse(sample.define_flags, f'--model_dir={model_dir}',
                             f'--output={tmp_path / "x.png"}', *args))
  assert not (tmp_path / 'x.png').exists()


def test_conditional_training_needs_labelled_data(tmp_path):
  folder = tmp_path / 'flat'
  folder.mkdir()
  image = tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8)).numpy()
  for i in range(3):
    (folder / f'{i}.png').write_bytes(image)
  # An error the command prints as one line (`common.report_errors`).
  with pytest.raises(common.EXPECTED_ERRORS,
                     match='each class in its own subfolder'):
    train.run(helpers.train_flags(
        f'--model_dir={tmp_path / "run"}', f'--dataset=folder:{folder}',
        '--conditional', *helpers.QUICK, '--steps=1'))
  assert not (tmp_path / 'run').exists()


CHILD = textwrap.dedent('''
    import sys
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    expected = np.load(sys.argv[2])
    x, labels = tf.constant(expected['x']), tf.constant(expected['labels'])
    assert int(loaded.num_classes) == 10
    np.testing.assert_allclose(loaded.log_prob(x, labels)['log_prob'],
                               expected['log_prob'], rtol=1e-5)
    signature = loaded.signatures['classify']
    classified = signature(images=x)
    np.testing.assert_allclose(classified['log_probs'], expected['log_probs'],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(classified['classes'], expected['classes'])
    latents = loaded.encode(x, labels)['latents']
    np.testing.assert_allclose(loaded.decode(latents, labels)['images'], x,
                               atol=1e-4)
    sample = loaded.signatures['sample'](
        n=tf.constant(3), temperature=tf.constant(0.7),
        seed=tf.constant([1, 2]), labels=tf.constant([0, 5, 9]))
    np.testing.assert_allclose(sample['images'], expected['sample'],
                               atol=1e-5)
    try:
      loaded.log_prob(x, tf.constant([0, 10, 1]))
      raise AssertionError('no error for a label out of range')
    except tf.errors.InvalidArgumentError as error:
      assert 'labels must be in 0..9' in str(error), error
    for name in ('tensorflow_probability', 'cinc_tfp'):
      assert name not in sys.modules, name
    print('served')
''')


def test_conditional_saved_model_serves_in_a_tensorflow_only_process(
    conditional_run, tmp_path):
  model_dir, _ = conditional_run
  model = run_lib.RunDirectory(model_dir).restore_for_inference()[0]
  x = data.dequantize(tf.stack(list(data.load_images(
      data.EMBEDDED, 'test', 8).take(3))), seed=[0, 1])
  labels = np.array([4, 0, 9], np.int32)
  log_probs = model.classify(x)
  expected = tmp_path / 'expected.npz'
  np.savez(expected, x=x, labels=labels, log_prob=model.log_prob(x, labels),
           log_probs=log_probs, classes=np.argmax(log_probs, -1),
           sample=model.sample(3, 0.7, tf.constant([1, 2]), labels=[0, 5, 9]))
  result = subprocess.run(
      [sys.executable, '-c', CHILD, str(model_dir / 'saved_model'),
       str(expected)], cwd=tmp_path, capture_output=True, text=True,
      timeout=180, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith('served')


def test_gpu_checks_serving_step_takes_a_conditional_export(conditional_run):
  line = helpers.served_on_cpu(conditional_run[0] / 'saved_model')
  assert line.startswith('SavedModel on the CPU: True | samples (4, 8, 8, 1) '
                         '| valid [True, True, True, True]'), line
