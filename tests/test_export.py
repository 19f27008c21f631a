"""Tests of cinc_tfp.export: SavedModels that serve with plain TensorFlow."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import data
from cinc_tfp import export
from cinc_tfp.flow import CIncFlow

SHAPE = (8, 8, 3)
SEED = [3, 4]
TEMPERATURE = 0.7


def _images(batch, seed=0):
  return tf.random.stateless_uniform([batch, *SHAPE], [seed, 1], minval=-0.5,
                                     maxval=0.5)


def _model(conv='cinc', seed=0, **options):
  """A tiny initialized flow, its weights moved off their (trivial) start."""
  model = CIncFlow(SHAPE, levels=2, depth=1, width=8, conv=conv, seed=seed,
                   **options)
  model.initialize(_images(16, seed=seed))
  rng = np.random.default_rng(seed)
  for weight in model.trainable_weights:
    weight.assign(weight.numpy() +
                  0.02 * rng.standard_normal(weight.shape).astype('float32'))
  return model


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """`get(conv, reverse_channels=False)`: `(model, path, loaded)`, saved
  once per model per module."""
  cache = {}

  def get(conv, reverse_channels=False):
    key = conv, reverse_channels
    if key not in cache:
      model = _model(conv, reverse_channels=reverse_channels)
      path = str(tmp_path_factory.mktemp(conv) / 'saved')
      export.save(model, path)
      cache[key] = model, path, export.load(path)
    return cache[key]

  return get


def _listing(directory):
  return sorted(os.listdir(directory))


@pytest.mark.parametrize('conv,reverse_channels', [
    ('cinc', False), ('emerging', False), ('1x1', False), ('cinc', True)])
def test_round_trip_matches_model(exported, conv, reverse_channels):
  model, _, loaded = exported(conv, reverse_channels)
  x = _images(3, seed=5)
  for batch in (x[:1], x):  # any batch size
    np.testing.assert_allclose(
        loaded.log_prob(batch)['log_prob'], model.log_prob(batch), rtol=1e-6)
  np.testing.assert_allclose(
      loaded.bits_per_dim(x)['bits_per_dim'], model.bits_per_dim(x),
      rtol=1e-6)
  latents = loaded.encode(x)['latents']
  assert latents.shape == (3, model.num_dims)
  np.testing.assert_allclose(latents, model.encode(x), atol=1e-6)
  decoded = loaded.decode(latents)['images']
  np.testing.assert_allclose(decoded, x, atol=1e-4)
  np.testing.assert_allclose(decoded, model.decode(latents), atol=1e-6)

  n, temperature, seed = tf.constant(4), tf.constant(TEMPERATURE), SEED
  sample = loaded.sample(n, temperature, tf.constant(seed))
  assert sample['images'].shape == (4, *SHAPE)
  np.testing.assert_allclose(sample['images'],
                             model.sample(4, TEMPERATURE, tf.constant(seed)),
                             atol=1e-6)
  again = loaded.sample(n, temperature, tf.constant(seed))
  np.testing.assert_array_equal(again['images'], sample['images'])
  other = loaded.sample(n, temperature, tf.constant([seed[0] + 1, seed[1]]))
  assert not np.allclose(other['images'], sample['images'])
  assert sample['images_uint8'].dtype == tf.uint8
  np.testing.assert_array_equal(sample['images_uint8'],
                                data.quantize(sample['images'], model.n_bits))

  # The same functions as named signatures, taking keyword arguments.
  assert set(loaded.signatures) == set(export.SIGNATURES)
  np.testing.assert_array_equal(
      loaded.signatures['sample'](n=n, temperature=temperature,
                                  seed=tf.constant(seed))['images'],
      sample['images'])
  assert json.loads(loaded.config_json.numpy()) == json.loads(
      json.dumps(model.get_config()))
  assert list(loaded.image_shape.numpy()) == list(SHAPE)
  assert int(loaded.n_bits) == model.n_bits


def test_served_inverse_plans_are_constants_and_never_stale(tmp_path):
  model = _model('cinc')
  path = str(tmp_path / 'saved')
  export.save(model, path)
  loaded = tf.saved_model.load(path)
  # The plans of the weights at export are constants of the served decode:
  # the SavedModel's variables are the model's weights and its four facts
  # (config_json, image_shape, n_bits, num_classes) only.
  saved = [name for name, _ in tf.train.list_variables(
      os.path.join(path, 'variables', 'variables'))
           if name.endswith('.ATTRIBUTES/VARIABLE_VALUE')]
  assert len(saved) == len(model.weights) + 4
  for x in (_images(2, seed=5), _images(1, seed=6)):
    np.testing.assert_allclose(
        loaded.decode(model.encode(x))['images'], x, atol=1e-4)
  # Weights assigned after loading: the served inverse no longer uses the
  # plans, and still inverts the served forward pass.
  weights = [weight for weight in loaded._weights  # pylint: disable=protected-access
             if 'log_diag' in weight.name]
  assert len(weights) == len(model.convs)
  for weight in weights:
    weight.assign_add(tf.fill(weight.shape, 0.2))
  for x in (_images(2, seed=7), _images(1, seed=8)):
    latents = loaded.encode(x)['latents']
    np.testing.assert_allclose(loaded.decode(latents)['images'], x,
                               atol=1e-4)
  assert not np.allclose(latents, model.encode(x), atol=1e-3)


def test_export_of_a_5_bit_model_keeps_its_bit_depth(tmp_path):
  model = CIncFlow(SHAPE, levels=1, depth=1, width=4, n_bits=5)
  model.initialize(_images(8))
  path = str(tmp_path / 'saved')
  export.save(model, path)
  loaded = export.load(path)
  assert int(loaded.n_bits) == 5
  assert json.loads(loaded.config_json.numpy())['n_bits'] == 5
  sample = loaded.sample(tf.constant(8), tf.constant(1.), tf.constant(SEED))
  # uint8 images on the 0..255 scale, in steps of 2**(8 - 5).
  images_uint8 = sample['images_uint8'].numpy()
  assert np.all(images_uint8 % 8 == 0) and len(np.unique(images_uint8)) > 4
  np.testing.assert_array_equal(images_uint8,
                                data.quantize(sample['images'], 5))


_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf

    path, expected = sys.argv[1], np.load(sys.argv[2])
    loaded = tf.saved_model.load(path)
    x, latents = expected['x'], expected['latents']
    args = dict(n=tf.constant(4), temperature=tf.constant(expected['t']),
                seed=tf.constant(expected['seed']))
    for call in (lambda name, **kw: getattr(loaded, name)(**kw),
                 lambda name, **kw: loaded.signatures[name](**kw)):
      np.testing.assert_allclose(call('log_prob', images=x)['log_prob'],
                                 expected['log_prob'], rtol=1e-6)
      np.testing.assert_allclose(call('bits_per_dim', images=x)['bits_per_dim'],
                                 expected['bits_per_dim'], rtol=1e-6)
      np.testing.assert_allclose(call('encode', images=x)['latents'], latents,
                                 atol=1e-6)
      np.testing.assert_allclose(call('decode', latents=latents)['images'], x,
                                 atol=1e-4)
      sample = call('sample', **args)
      np.testing.assert_allclose(sample['images'], expected['sample'],
                                 atol=1e-6)
      np.testing.assert_array_equal(sample['images_uint8'],
                                    expected['sample_uint8'])
      assert sample['valid'].numpy().all()
      assert call('decode', latents=latents)['valid'].numpy().all()
      # Latents too far out for float32: the output says which overflowed.
      huge = dict(args, temperature=tf.constant(1e38))
      assert not call('sample', **huge)['valid'].numpy().any()
      for bad, words in ((x * 255., '[-0.5, 0.5)'), (x * np.nan, '[-0.5, 0.5)')):
        try:
          call('bits_per_dim', images=tf.constant(bad, tf.float32))
          raise AssertionError('no error for images outside [-0.5, 0.5)')
        except tf.errors.InvalidArgumentError as error:
          assert words in str(error), error
      for n, t in ((-1, 0.7), (2, 0.), (2, float('nan'))):
        try:
          call('sample', n=tf.constant(n), temperature=tf.constant(t),
               seed=args['seed'])
          raise AssertionError(f'no error for sample(n={n}, temperature={t})')
        except tf.errors.InvalidArgumentError as error:
          assert 'CIncFlow.sample' in str(error), error
    assert tuple(loaded.image_shape.numpy()) == x.shape[1:]
    assert b'"conv": "cinc"' in loaded.config_json.numpy()
    # (TensorFlow imports Keras itself.)
    for name in ('tensorflow_probability', 'cinc_tfp'):
      assert name not in sys.modules, name
    print('served')
""")


def test_fresh_process_needs_only_tensorflow(exported, tmp_path):
  model, path, _ = exported('cinc')
  x = _images(3, seed=7)
  sample = model.sample(4, TEMPERATURE, tf.constant(SEED))
  expected = str(tmp_path / 'expected.npz')
  np.savez(expected, x=x, seed=np.array(SEED, np.int32),
           t=np.float32(TEMPERATURE),
           latents=model.encode(x), log_prob=model.log_prob(x),
           bits_per_dim=model.bits_per_dim(x), sample=sample,
           sample_uint8=data.quantize(sample, model.n_bits))
  # Outside the repository: only the SavedModel ties the child to cinc_tfp.
  result = subprocess.run(
      [sys.executable, '-c', _CHILD, path, expected], cwd=tmp_path,
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith('served')


def _assert_serves(path, model):
  """The SavedModel at `path` serves `model`, alone in its directory."""
  assert _listing(os.path.dirname(path)) == [os.path.basename(path)]
  x = _images(2)
  loaded = export.load(path)
  np.testing.assert_allclose(loaded.log_prob(x)['log_prob'], model.log_prob(x),
                             rtol=1e-6)


def test_save_replaces_previous(exported, tmp_path):
  path = str(tmp_path / 'saved')
  shutil.copytree(exported('cinc')[1], path)
  model = exported('1x1')[0]
  export.save(model, path)
  _assert_serves(path, model)
  os.mkdir(tmp_path / 'usual')
  assert os.stat(path).st_mode == os.stat(tmp_path / 'usual').st_mode


def _write_junk(module, directory, signatures=None):
  """Stands in for `tf.saved_model.save`, quickly."""
  del module, signatures
  os.makedirs(directory)
  with open(os.path.join(directory, 'saved_model.pb'), 'wb') as file:
    file.write(b'junk')


def test_failed_save_leaves_previous_intact(exported, monkeypatch):
  model, path, _ = exported('cinc')

  def fail_to_save(*args, **kwargs):
    _write_junk(*args, **kwargs)
    raise RuntimeError('disk full')

  monkeypatch.setattr(tf.saved_model, 'save', fail_to_save)
  with pytest.raises(RuntimeError, match='disk full'):
    export.save(model, path)
  monkeypatch.undo()
  _assert_serves(path, model)


def test_failed_swap_restores_previous(exported, monkeypatch):
  model, path, _ = exported('cinc')
  replace = os.replace

  def fail_to_move_new(source, destination):
    if os.path.basename(os.path.dirname(source)).startswith('.saved.saving-'):
      raise OSError('rename failed')
    replace(source, destination)

  monkeypatch.setattr(tf.saved_model, 'save', _write_junk)
  monkeypatch.setattr(os, 'replace', fail_to_move_new)
  with pytest.raises(OSError, match='rename failed'):
    export.save(model, path)
  monkeypatch.undo()
  _assert_serves(path, model)


def test_save_removes_what_a_killed_save_left(exported, tmp_path):
  """A save killed midway leaves its staging folder (and maybe the previous
  SavedModel set aside); the next save to the same path cleans up after it,
  but not after a save still running."""
  model, source, _ = exported('cinc')
  dead = subprocess.Popen(['true'])
  dead.wait()
  path = tmp_path / 'saved'
  (tmp_path / f'.saved.saving-{dead.pid}-x1' / 'saved').mkdir(parents=True)
  shutil.copytree(source, tmp_path / f'.saved.old-{dead.pid}-x2' / 'old')
  running = tmp_path / f'.saved.saving-{os.getpid()}-x3'
  running.mkdir()
  export.save(model, str(path))
  assert _listing(tmp_path) == [running.name, 'saved']
  running.rmdir()
  _assert_serves(str(path), model)


def test_save_refuses_to_replace_other_data(tmp_path):
  (tmp_path / 'notes.txt').write_text('keep me')
  with pytest.raises(export.ExportError, match='neither a SavedModel'):
    export.save(_model(), str(tmp_path))
  assert _listing(tmp_path) == ['notes.txt']
  with pytest.raises(export.ExportError, match=re.escape(
      f"its directory {str(tmp_path / 'notes.txt')!r} cannot be made")):
    export.save(_model(), str(tmp_path / 'notes.txt' / 'saved'))
  assert _listing(tmp_path) == ['notes.txt']
  with pytest.raises(TypeError, match='CIncFlow'):
    export.save(tf.Module(), str(tmp_path / 'saved'))


def test_save_refuses_an_uninitialized_model(tmp_path):
  model = CIncFlow(SHAPE, levels=2, depth=1, width=4)
  with pytest.raises(export.ExportError, match='never initialized'):
    export.save(model, str(tmp_path / 'saved'))
  assert _listing(tmp_path) == []


def test_load_errors_name_the_path(tmp_path):
  corrupt = tmp_path / 'corrupt'
  corrupt.mkdir()
  (corrupt / 'saved_model.pb').write_bytes(b'\x00garbage\xff')
  empty = tmp_path / 'empty'
  empty.mkdir()
  foreign = str(tmp_path / 'foreign')
  tf.saved_model.save(tf.Module(), foreign)
  for path in (str(tmp_path / 'missing'), str(empty), str(corrupt), foreign):
    with pytest.raises(export.ExportError) as error:
      export.load(path)
    message = str(error.value)
    assert repr(path) in message and '\n' not in message, message
