"""Tests of `cinc_tfp.run`: run paths in every form a user writes, and a
whole train, resume, evaluate, sample, interpolate and export cycle in a
relative directory and on TensorFlow's in-memory `ram://` filesystem."""

import os
import uuid

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import run as run_lib
from tests import train_helpers as helpers
from train import evaluate
from train import export as export_command
from train import sample
from train import train


def test_resolve_makes_local_paths_absolute_and_keeps_remote_ones(
    tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert run_lib.resolve('runs/x') == str(tmp_path / 'runs' / 'x')
  assert run_lib.resolve('./runs/x/') == str(tmp_path / 'runs' / 'x')
  assert run_lib.resolve('~/x') == str(tmp_path / 'home' / 'x')
  assert run_lib.resolve(tmp_path / 'a' / '..' / 'b') == str(tmp_path / 'b')
  assert run_lib.resolve('gs://bucket/run/') == 'gs://bucket/run'
  assert run_lib.resolve('ram://run') == 'ram://run'
  (tmp_path / 'real').mkdir()
  (tmp_path / 'link').symlink_to(tmp_path / 'real')
  assert run_lib.resolve('link') == str(tmp_path / 'link')  # Kept as named.


def _run_path(form, tmp_path, monkeypatch):
  """A run directory written as a user would, and where its files land."""
  monkeypatch.chdir(tmp_path)
  if form == 'ram':
    path = f'ram://test-run-{uuid.uuid4().hex}/run'
    return path, path
  return 'runs/x', str(tmp_path / 'runs' / 'x')


# './runs/x', '~/runs/x' and symlinked paths resolve to plain absolute paths
# (see the test above), so the whole cycle runs on the two forms that take
# other routes: relative (TF's checkpoint paths) and ram:// (no rename).
# The ram:// run trains with --recompute, which config.json keeps, and
# starts with --noreverse_channels, which resuming without the flag keeps.
@pytest.mark.parametrize('form', ['relative', 'ram'])
def test_run_directory_in_any_form_trains_resumes_evaluates_and_exports(
    form, tmp_path, monkeypatch):
  path, lands_in = _run_path(form, tmp_path, monkeypatch)
  recompute = ('--recompute',) if form == 'ram' else ()
  # The export command below writes the SavedModel: the runs skip theirs.
  short = (*helpers.QUICK, '--steps_per_epoch=2', '--checkpoint_every=2',
           *recompute)
  unreversed = ('--noreverse_channels',) if form == 'ram' else ()
  first = train.run(helpers.parse(train.define_flags, f'--model_dir={path}',
                                  '--steps=2', *short, *unreversed))
  assert first['step'] == 2
  assert tf.io.gfile.exists(os.path.join(lands_in, 'ckpt-2.index'))
  resumed = train.run(helpers.parse(train.define_flags, f'--model_dir={path}',
                                    '--steps=4', *short))
  assert resumed['step'] == 4
  run_dir = run_lib.RunDirectory(path)
  assert run_dir.latest_checkpoint() == os.path.join(run_dir.path, 'ckpt-4')
  assert run_dir.read_config()['recompute'] == bool(recompute)
  # The default CInC flow reverses its channels: saved as a value, not as
  # the default, so that the run restores the same flow if the default
  # changes.
  assert run_dir.read_config()['reverse_channels'] is (form == 'relative')

  bits = evaluate.run(helpers.parse(evaluate.define_flags,
                                    f'--model_dir={path}'))[1]['bits_per_dim']
  assert bits == pytest.approx(resumed['test_bits_per_dim'], abs=1e-4)

  samples = f'{path}/samples/grid.png'
  sample.run(helpers.parse(sample.define_flags, f'--model_dir={path}',
                           '--num_samples=4', f'--output={samples}'))
  interpolation = f'{path}/interpolation.png'
  row = sample.run(helpers.parse(
      sample.define_flags, f'--model_dir={path}', '--interpolate=0,1',
      '--steps=2', f'--output={interpolation}'))
  for written, shape in ((samples, (16, 16, 1)), (interpolation, row.shape)):
    local = os.path.join(lands_in, written[len(path) + 1:])
    image = tf.io.decode_png(tf.io.read_file(local)).numpy()
    assert image.shape == shape

  exported = export_command.run(helpers.parse(
      export_command.define_flags, f'--model_dir={path}'))
  assert exported == os.path.join(run_dir.path, 'saved_model')
  served_bits = evaluate.run(helpers.parse(
      evaluate.define_flags, f'--saved_model={exported}'))[1]['bits_per_dim']
  assert served_bits == pytest.approx(bits, abs=1e-4)
  leftovers = [name for name in tf.io.gfile.listdir(lands_in)
               if 'saving' in name or name.endswith('.tmp')]
  assert not leftovers


def test_foreign_checkpoint_is_refused_before_anything_is_restored(tmp_path):
  model_dir = tmp_path / 'run'
  train.run(helpers.parse(train.define_flags, f'--model_dir={model_dir}',
                          *helpers.TINY, '--steps=2', '--steps_per_epoch=2'))
  config = run_lib.RunDirectory(model_dir).read_config()
  model = run_lib.build_model(dict(config, width=16))
  optimizer = run_lib.build_optimizer(config, model.trainable_variables)
  before = [weight.numpy() for weight in model.weights]
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  with pytest.raises(run_lib.RunError, match=(
      r'checkpoint of another model \(\d+ variables of other shapes, e\.g\. '
      r'\[.*\] saved where this model has \[.*16.*\]\)')):
    run_lib.restore(checkpoint, str(model_dir / 'ckpt-2'))
  for weight, value in zip(model.weights, before):
    np.testing.assert_array_equal(weight.numpy(), value)
  assert not tf.io.gfile.glob('ram://cinc_tfp_restore_check/*/ckpt*')
