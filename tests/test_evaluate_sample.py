"""Tests of `train.evaluate`, `train.sample` and of the exported SavedModel,
on a tiny flow trained once for the module."""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import data
from cinc_tfp import export
from cinc_tfp import run as run_lib
from tests import train_helpers as helpers
from train import common
from train import evaluate
from train import export as export_command
from train import sample
from train import train


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """The model directory of a 6-step run of the tiny flow."""
  model_dir = tmp_path_factory.mktemp('evaluate') / 'run'
  result = train.run(helpers.parse(
      train.define_flags, f'--model_dir={model_dir}', *helpers.TINY,
      '--steps=6', '--steps_per_epoch=3'))
  return model_dir, result['test_bits_per_dim']


def _png(path):
  return tf.io.decode_png(path.read_bytes()).numpy()


def test_evaluate_checkpoint_and_saved_model_agree_with_training(run_dir):
  model_dir, trained_bits = run_dir
  for source in (f'--model_dir={model_dir}',
                 f'--saved_model={model_dir / "saved_model"}'):
    split, metrics = evaluate.run(helpers.parse(evaluate.define_flags,
                                                source))
    assert split == 'test'
    assert metrics['bits_per_dim'] == pytest.approx(trained_bits, abs=1e-4)


def test_evaluate_command_prints_test_bits_per_dim(run_dir):
  model_dir, _ = run_dir
  result = helpers.run('evaluate', f'--model_dir={model_dir}',
                       '--split=train', '--batch_size=1000')
  assert result.returncode == 0, result.stderr[-3000:]
  last = result.stdout.strip().splitlines()[-1]
  assert last.startswith('train bits/dim: ')
  assert math.isfinite(float(last.split(':')[1]))


def test_evaluate_needs_one_model_source():
  result = helpers.run('evaluate')
  helpers.assert_fails_with_one_line(result, 'Flags parsing error',
                                     'model_dir', 'saved_model')
  with pytest.raises(Exception, match='model_dir'):
    helpers.parse(evaluate.define_flags, '--model_dir=a',
                  '--saved_model=b')


@pytest.mark.parametrize('source, directory, words', [
    ('model_dir', '', 'config.json'),
    ('model_dir', 'missing', 'missing does not exist'),
    ('model_dir', 'a_file', 'a_file is a file, not a directory'),
    ('saved_model', '', 'Cannot load a SavedModel'),
])
def test_evaluate_of_a_directory_without_a_model_is_a_clear_error(
    tmp_path, source, directory, words):
  (tmp_path / 'a_file').write_text('')
  with pytest.raises((run_lib.RunError, export.ExportError), match=words):
    evaluate.run(helpers.parse(evaluate.define_flags,
                               f'--{source}={tmp_path / directory}'))


@pytest.mark.parametrize('output, words', [
    ('a_file/samples.png', 'a_file is a file'),
    ('a_folder.png', 'is a directory, not a file'),
])
def test_sample_to_an_unwritable_output_fails_before_sampling(
    run_dir, tmp_path, output, words):
  (tmp_path / 'a_file').write_text('')
  (tmp_path / 'a_folder.png').mkdir()
  before = sorted(tmp_path.rglob('*'))
  with pytest.raises(run_lib.RunError, match=words):
    sample.run(helpers.parse(sample.define_flags, f'--model_dir={run_dir[0]}',
                             f'--output={tmp_path / output}'))
  assert sorted(tmp_path.rglob('*')) == before


def test_export_to_an_unwritable_output_fails_before_loading(tmp_path):
  (tmp_path / 'a_file').write_text('')
  with pytest.raises(run_lib.RunError, match='a_file is a file'):
    export_command.run(helpers.parse(
        export_command.define_flags, f'--model_dir={tmp_path / "none"}',
        f'--output={tmp_path / "a_file" / "exported"}'))


@pytest.mark.parametrize('args, words', [
    (('--temperature=nan',), 'finite'),
    (('--temperature=0',), 'above 0'),
    (('--output=b.gif',), '.png, .jpg or .jpeg'),
    (('--output=b',), '.png, .jpg or .jpeg'),
])
def test_bad_sample_flags_are_flags_errors(args, words):
  with pytest.raises(Exception, match=words):
    helpers.parse(sample.define_flags, '--model_dir=a', '--output=b.png',
                  *args)


@pytest.mark.parametrize('args, words', [
    (('--labels=1',), 'unconditional: it takes no labels'),
    # Before any data is loaded (this folder does not exist).
    (('--labels=0,1', '--interpolate=0,1', '--dataset=folder:/no/such'),
     'unconditional: it takes no labels'),
    (('--per_class=2',), 'unconditional: it has no classes'),
])
def test_classes_asked_of_an_unconditional_flow_are_an_error(
    run_dir, tmp_path, args, words):
  with pytest.raises(run_lib.RunError, match=words):
    sample.run(helpers.parse(sample.define_flags, f'--model_dir={run_dir[0]}',
                             f'--output={tmp_path / "x.png"}', *args))
  assert not (tmp_path / 'x.png').exists()


def test_evaluate_on_data_with_other_channels_is_an_error(run_dir, tmp_path):
  folder = tmp_path / 'images'
  folder.mkdir()
  (folder / 'a.png').write_bytes(
      tf.io.encode_png(np.zeros([8, 8, 3], np.uint8)).numpy())
  with pytest.raises(run_lib.RunError, match='1 channel.*has 3 channel'):
    evaluate.run(helpers.parse(evaluate.define_flags,
                               f'--model_dir={run_dir[0]}',
                               f'--dataset=folder:{folder}'))
  # The library checks what it is given, as the command does.
  trained = run_lib.TrainedFlow.from_run_directory(run_dir[0])
  for images, found in (
      (data.load_images(f'folder:{folder}', 'test', 8), 'has 3 channel'),
      (data.load_images(f'folder:{folder}', 'test', 4),
       r'has images of shape \(4, 4, 3\)')):
    with pytest.raises(run_lib.RunError, match=found):
      run_lib.evaluate(trained, images)
  # A dataset whose image shape is not known in advance is taken.
  fitting = data.load_images(data.EMBEDDED, 'test', 8).take(5)
  unknown = tf.data.Dataset.from_generator(
      fitting.as_numpy_iterator,
      output_signature=tf.TensorSpec([None, None, 1], tf.uint8))
  np.testing.assert_allclose(
      run_lib.evaluate(trained, unknown)['bits_per_dim'],
      run_lib.evaluate(trained, fitting)['bits_per_dim'], rtol=1e-6)


@pytest.mark.parametrize('source', ['model_dir', 'saved_model'])
def test_samples_grid(run_dir, tmp_path, source):
  model_dir, _ = run_dir
  path = model_dir if source == 'model_dir' else model_dir / 'saved_model'
  outputs = []
  for name in ('a.png', 'b.png', 'b.png'):  # The last replaces a sample.
    sample.run(helpers.parse(
        sample.define_flags, f'--{source}={path}', '--num_samples=6',
        '--temperature=0.8', '--seed=3', f'--output={tmp_path / name}'))
    outputs.append(_png(tmp_path / name))
  assert outputs[0].shape == (2 * 8, 3 * 8, 1)  # 6 images: 2 rows of 3.
  np.testing.assert_array_equal(outputs[0], outputs[1])  # Same seed.


def test_samples_that_overflow_are_reported(run_dir, tmp_path, capsys):
  """Latents too far out for float32 (temperature 1e38): one warning line
  counts the images that could not be computed."""
  sample.run(helpers.parse(
      sample.define_flags, f'--model_dir={run_dir[0]}', '--num_samples=3',
      '--temperature=1e38', f'--output={tmp_path / "s.png"}'))
  err = capsys.readouterr().err
  assert 'warning: 3 of 3 samples are not finite' in err, err
  sample.run(helpers.parse(
      sample.define_flags, f'--model_dir={run_dir[0]}', '--num_samples=3',
      f'--output={tmp_path / "t.png"}'))
  assert 'warning' not in capsys.readouterr().err


@pytest.mark.parametrize('output', ['s.jpg', 'S.JPEG'])
def test_samples_as_jpeg(run_dir, tmp_path, output):
  sample.run(helpers.parse(
      sample.define_flags, f'--model_dir={run_dir[0]}', '--num_samples=4',
      f'--output={tmp_path / output}'))
  assert tf.io.is_jpeg(tf.io.read_file(str(tmp_path / output)))


def test_interpolation_between_dataset_images_and_files(run_dir, tmp_path):
  model_dir, _ = run_dir
  output = tmp_path / 'out' / 'row.png'
  result = helpers.run('sample', f'--model_dir={model_dir}',
                       '--interpolate=0,1', '--steps=3', f'--output={output}')
  assert result.returncode == 0, result.stderr[-3000:]
  row = _png(output)
  assert row.shape == (8, 5 * 8, 1)  # The two images and 3 frames between.
  originals = [image.numpy() for image in data.load_images(
      'embedded', 'test', 8).take(2)]
  # The ends decode the images back, up to one grey level of round-off.
  for frame, original in ((row[:, :8], originals[0]),
                          (row[:, -8:], originals[1])):
    assert np.abs(frame.astype(int) - original.astype(int)).max() <= 1

  files = []
  for i, original in enumerate(originals):
    files.append(tmp_path / f'{i}.png')
    files[-1].write_bytes(tf.io.encode_png(original).numpy())
  sample.run(helpers.parse(
      sample.define_flags, f'--saved_model={model_dir / "saved_model"}',
      f'--interpolate={files[0]},{files[1]}', '--steps=3',
      f'--output={tmp_path / "files.png"}'))
  np.testing.assert_allclose(_png(tmp_path / 'files.png'), row, atol=1)


@pytest.mark.parametrize('interpolate, words', [
    ('0,100000', 'has no image 100000'),
    ('0,/no/such/image.png', "'/no/such/image.png': no such file"),
    ('0,/', "'/': not a regular file"),
    ('-1,2', 'indices start at 0, got -1'),
])
def test_interpolation_of_missing_images_is_an_error(
    run_dir, tmp_path, interpolate, words):
  with pytest.raises(common.EXPECTED_ERRORS, match=words):
    sample.run(helpers.parse(
        sample.define_flags, f'--model_dir={run_dir[0]}',
        f'--interpolate={interpolate}', f'--output={tmp_path / "x.png"}'))


def test_saved_model_serves_in_a_process_without_cinc_tfp(run_dir):
  model_dir, _ = run_dir
  script = textwrap.dedent(f"""
      import sys
      import tensorflow as tf
      loaded = tf.saved_model.load({str(model_dir / 'saved_model')!r})
      out = loaded.signatures['sample'](
          n=tf.constant(3), temperature=tf.constant(0.7),
          seed=tf.constant([1, 2]))
      assert out['images_uint8'].shape == (3, 8, 8, 1), out
      assert out['valid'].numpy().all()
      # Samples may leave [-0.5, 0.5), which log_prob refuses: clip them.
      images = tf.clip_by_value(out['images'], -0.5, 0.499)
      bits = loaded.bits_per_dim(images)['bits_per_dim']
      assert bits.shape == (3,) and bool(tf.reduce_all(tf.math.is_finite(bits)))
      z = loaded.encode(images)['latents']
      back = loaded.decode(z)['images']
      assert float(tf.reduce_max(tf.abs(back - images))) < 1e-3
      for name in ('cinc_tfp', 'tensorflow_probability', 'train'):
        assert name not in sys.modules, name
      print('served')
      """)
  result = subprocess.run([sys.executable, '-c', script], cwd='/',
                          env=helpers.env(), capture_output=True, text=True,
                          timeout=180, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith('served')


def test_gpu_checks_serving_step_scores_the_quantized_samples(run_dir):
  # Samples leave [-0.5, 0.5), which bits_per_dim refuses: the step scores
  # their quantized form. Scoring the samples themselves failed here.
  line = helpers.served_on_cpu(run_dir[0] / 'saved_model')
  assert line.startswith('SavedModel on the CPU: True | samples (4, 8, 8, 1) '
                         '| valid [True, True, True, True]'), line
  bits = json.loads(line.split('quantized form ')[1])
  assert len(bits) == 4 and all(0 < b < 20 for b in bits), line


def test_export_command_writes_a_saved_model_of_the_checkpoint(run_dir, tmp_path):
  model_dir, trained_bits = run_dir
  output = tmp_path / 'exported'
  export_command.run(helpers.parse(
      export_command.define_flags, f'--model_dir={model_dir}',
      f'--output={output}'))
  split, metrics = evaluate.run(helpers.parse(evaluate.define_flags,
                                              f'--saved_model={output}'))
  assert split == 'test'
  assert metrics['bits_per_dim'] == pytest.approx(trained_bits, abs=1e-4)
  result = helpers.run('export', f'--model_dir={tmp_path / "missing"}')
  assert result.returncode == 1
  lines = helpers.message_lines(result.stderr)
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
