"""End-to-end tests of the `python -m train.train` command, on tiny flows:
its run directory, resuming (after SIGKILL too), checkpoints and options that
do not fit, and its errors (one line: in a subprocess for each way a command
fails, else by the errors `common.report_errors` prints). The course of a
run itself (`cinc_tfp.trainer`) is tested in test_trainer.py."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import run as run_lib
from cinc_tfp import trainer
from tests import train_helpers as helpers
from train import common
from train import evaluate
from train import train

SHORT = ('--steps=6', '--steps_per_epoch=3', '--checkpoint_every=2')


def _parse(*args):
  return helpers.parse(train.define_flags, *args)


def _snapshot(directory):
  """{relative path: bytes} of every file under `directory`."""
  files = {}
  for folder, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, 'rb') as file:
        files[os.path.relpath(path, directory)] = file.read()
  return files



@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  """A run of the command with the defaults but a tiny flow and 6 steps."""
  model_dir = tmp_path_factory.mktemp('finished') / 'run'
  args = (f'--model_dir={model_dir}', *helpers.TINY, *SHORT)
  result = helpers.run('train', *args)
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir, args, result


def _copy(finished_run, tmp_path):
  model_dir, args, _ = finished_run
  copy = tmp_path / 'run'
  shutil.copytree(model_dir, copy)
  args = tuple(f'--model_dir={copy}' if a.startswith('--model_dir=') else a
               for a in args)
  return copy, args


def test_default_command_trains_evaluates_samples_and_exports(finished_run):
  model_dir, _, result = finished_run
  bits = helpers.printed_bits_per_dim(result.stdout)
  assert math.isfinite(bits) and 0 < bits < 9
  assert 'Starting a new run' in result.stdout
  assert helpers.checkpoint_step(model_dir) == 6
  config = json.loads((model_dir / 'config.json').read_text())
  assert config['dataset'] == 'embedded' and config['image_size'] == 8
  assert config['channels'] == 1 and config['ema'] == 0.99
  grid = tf.io.decode_png((model_dir / 'samples.png').read_bytes()).numpy()
  assert grid.shape == (4 * 8, trainer.SAMPLES_PER_ROW * 8, 1)  # 4 temperatures
  assert (model_dir / 'saved_model' / 'saved_model.pb').exists()
  tags = set()
  for events in tf.io.gfile.glob(str(model_dir / 'tensorboard' / '*' / '*')):
    for event in tf.compat.v1.train.summary_iterator(events):
      tags.update(value.tag for value in event.summary.value)
  assert 'samples' in tags and 'epoch_bits_per_dim' in tags


def test_rerun_of_a_finished_run_resumes_and_changes_nothing(
    finished_run, tmp_path):
  model_dir, args = _copy(finished_run, tmp_path)
  result = helpers.run('train', *args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'Resuming {model_dir} from {model_dir}/ckpt-6' in result.stdout
  assert 'Epoch' not in result.stdout
  assert helpers.printed_bits_per_dim(result.stdout) == pytest.approx(
      helpers.printed_bits_per_dim(finished_run[2].stdout), abs=1e-3)
  assert helpers.checkpoint_step(model_dir) == 6


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
  """SIGKILL mid-training, then the same command, from a relative
  --model_dir as the README writes it: the run ends with the weights of an
  uninterrupted run."""
  monkeypatch.chdir(tmp_path)
  args = (*helpers.QUICK, '--steps=20', '--steps_per_epoch=7',
          '--checkpoint_every=2')
  killed = ('--model_dir=runs/killed', *args)
  model_dir = tmp_path / 'runs' / 'killed'
  with open(tmp_path / 'killed.log', 'w') as log:
    process = subprocess.Popen(
        helpers.command('train', *killed), cwd=tmp_path,
        env=helpers.env(PYTHONPATH=helpers.ROOT), stdout=log,
        stderr=subprocess.STDOUT)
    try:
      deadline = time.time() + 180
      while not (model_dir / 'checkpoint').exists():
        assert process.poll() is None, (tmp_path / 'killed.log').read_text()
        assert time.time() < deadline, 'no checkpoint within 180 s'
        time.sleep(0.02)
    finally:
      process.send_signal(signal.SIGKILL)
      process.wait()
  killed_at = helpers.checkpoint_step(model_dir)
  assert 0 < killed_at < 20, 'the run was not killed mid-training'

  result = subprocess.run(
      helpers.command('train', *killed), cwd=tmp_path,
      env=helpers.env(PYTHONPATH=helpers.ROOT), capture_output=True,
      text=True, timeout=240, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'Resuming {model_dir} from {model_dir}/ckpt-' in result.stdout
  resumed_from = int(result.stdout.split('/ckpt-')[1].split('.')[0])
  assert resumed_from >= killed_at
  assert math.isfinite(helpers.printed_bits_per_dim(result.stdout))
  _, _, step = run_lib.RunDirectory(model_dir).restore_for_inference()
  assert step == 20 and helpers.checkpoint_step(model_dir) == 20
  tf.random.set_seed(7)  # The stream must not follow TF's global seed.
  train.run(_parse('--model_dir=runs/whole', *args))
  helpers.assert_same_checkpoints(model_dir / 'ckpt-20',
                                  tmp_path / 'runs' / 'whole' / 'ckpt-20')


def test_corrupt_checkpoint_is_a_clear_error_and_left_alone(
    finished_run, tmp_path):
  model_dir, args = _copy(finished_run, tmp_path)
  (model_dir / 'ckpt-6.data-00000-of-00001').write_bytes(b'garbage' * 1000)
  before = _snapshot(model_dir)
  result = helpers.run('train', *args)
  helpers.assert_fails_with_one_line(result, 'error:', 'checkpoint',
                                     str(model_dir / 'ckpt-6'))
  # The same error, from the evaluate command (in this process).
  with pytest.raises(run_lib.RunError, match=re.escape(
      str(model_dir / 'ckpt-6'))):
    evaluate.run(helpers.parse(evaluate.define_flags,
                               f'--model_dir={model_dir}'))
  assert _snapshot(model_dir) == before


def test_checkpoint_of_another_model_is_an_error(finished_run, tmp_path):
  model_dir, args = _copy(finished_run, tmp_path)
  config = json.loads((model_dir / 'config.json').read_text())
  config['width'] = 16
  (model_dir / 'config.json').write_text(json.dumps(config))
  before = _snapshot(model_dir)
  with pytest.raises(run_lib.RunError, match='checkpoint of another model'):
    train.run(_parse(*args, '--width=16'))
  # One line and nothing after it: no warnings about unrestored values.
  result = helpers.run('evaluate', f'--model_dir={model_dir}')
  helpers.assert_fails_with_one_line(result, 'error:',
                                     'checkpoint of another model')
  assert 'WARNING:tensorflow' not in result.stderr, result.stderr
  assert _snapshot(model_dir) == before


def test_checkpoint_files_without_their_index_are_an_error(
    finished_run, tmp_path):
  model_dir, args = _copy(finished_run, tmp_path)
  (model_dir / 'checkpoint').unlink()
  with pytest.raises(run_lib.RunError, match='no readable checkpoint index'):
    train.run(_parse(*args))


def test_changed_options_are_an_error_naming_them(finished_run, tmp_path):
  model_dir, args = _copy(finished_run, tmp_path)
  before = _snapshot(model_dir)
  with pytest.raises(run_lib.RunError) as error:
    train.run(_parse(*args, '--width=16', '--optimizer=adam'))
  assert 'width: 8 saved, 16 now' in str(error.value)
  assert "optimizer: 'adamax' saved, 'adam' now" in str(error.value)
  assert _snapshot(model_dir) == before


def test_bad_flags_fail_at_parse_time_with_one_line(tmp_path):
  result = helpers.run('train', f'--model_dir={tmp_path}', '--image_size=12',
                       '--levels=3')
  helpers.assert_fails_with_one_line(result, 'Flags parsing error', '12',
                                     'divisible', '8')
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize('args, words', [
    (('--dataset=nope',), ('nope', 'embedded')),
    (('--batch_size=-4',), ('batch_size',)),
    (('--image_size=-8',), ('image_size',)),
    (('--kernel_size=4',), ('kernel_size must be odd',)),
])
def test_bad_flags_name_the_problem(args, words):
  with pytest.raises(Exception, match='flag') as raised:
    _parse(*args)
  assert all(word in str(raised.value) for word in words), raised.value


def test_model_dir_that_cannot_be_created_fails_before_any_work(tmp_path,
                                                                 capsys):
  (tmp_path / 'a_file').write_text('')
  # An error the command prints as one line (`common.report_errors`).
  with pytest.raises(common.EXPECTED_ERRORS,
                     match='Cannot create.*a_file is a file'):
    train.run(_parse(f'--model_dir={tmp_path / "a_file" / "run"}',
                     *helpers.QUICK, '--steps=2'))
  assert 'Starting' not in capsys.readouterr().out
  assert os.listdir(tmp_path) == ['a_file']


@pytest.mark.parametrize('raised, words, status', [
    (KeyboardInterrupt(), 'error: interrupted', 130),
    (OSError(28, 'No space left on device'), 'No space left on device', 1),
    (tf.errors.NotFoundError(None, None, '{{function_node __wrapped__ReadFile}} '
                             'x.png; no such file [Op:ReadFile]'),
     'error: x.png; no such file', 1),
])
def test_interruptions_and_file_errors_end_with_one_line(raised, words, status,
                                                         capsys):
  """What `common.report_errors` does in every command (a real process
  reports a data error so in `test_missing_folder_fails_with_one_line`)."""

  def run(unused_flag_values):
    raise raised

  with pytest.raises(SystemExit) as exit_:
    common.report_errors(run, None)
  assert exit_.value.code == status
  lines = helpers.message_lines(capsys.readouterr().err)
  assert len(lines) == 1 and words in lines[0], lines
  assert '{{' not in lines[0] and '[Op:' not in lines[0]


@pytest.mark.parametrize('content, words', [
    ('5', 'not a JSON object'),
    ('{"levels": 2}', 'it lacks'),
])
def test_damaged_config_is_a_clear_error(tmp_path, content, words):
  (tmp_path / 'config.json').write_text(content)
  with pytest.raises(run_lib.RunError, match=words):
    run_lib.RunDirectory(tmp_path).read_config()


def test_config_values_of_the_wrong_type_are_a_clear_error(finished_run,
                                                           tmp_path):
  model_dir, _ = _copy(finished_run, tmp_path)
  config = json.loads((model_dir / 'config.json').read_text())
  config.update(ema='0.99', width=8.5)
  (model_dir / 'config.json').write_text(json.dumps(config))
  with pytest.raises(run_lib.RunError,
                     match=r"wrong type: width \(8.5\), ema \('0.99'\)"):
    run_lib.RunDirectory(model_dir).read_config()


def test_missing_folder_fails_with_one_line(tmp_path):
  result = helpers.run('train', f'--model_dir={tmp_path / "run"}',
                       f'--dataset=folder:{tmp_path / "missing"}')
  helpers.assert_fails_with_one_line(result, 'error:', 'does not exist',
                                     str(tmp_path / 'missing'))
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('args', [
    ('--width=0',), ('--levels=-1',), ('--kernel_size=4',), ('--n_bits=9',),
    ('--strategy=tpu',), ('--conv=3x3',), ('--ema=1',),
    ('--temperatures=0.5,-1',), ('--steps=0',), ('--learning_rate=nan',),
    ('--learning_rate=inf',), ('--temperatures=inf',),
])
def test_more_bad_flags_are_rejected_at_parse_time(args):
  with pytest.raises(Exception, match='flag'):
    _parse(*args)


def test_a_run_on_a_relative_folder_works_from_any_directory(
    tmp_path, monkeypatch):
  """The folder is saved resolved, as --model_dir is: the run evaluates from
  elsewhere, and resumes with the folder spelled another way."""
  rng = np.random.default_rng(0)
  for index in range(24):
    tf.io.write_file(
        str(tmp_path / 'images' / f'{index:02d}.png'),
        tf.io.encode_png(rng.integers(0, 256, [8, 8, 3], np.uint8)))
  monkeypatch.chdir(tmp_path)
  args = ('--model_dir=runs/folder', *helpers.QUICK, '--steps_per_epoch=2')
  train.run(helpers.parse(train.define_flags, *args, '--steps=2',
                          '--dataset=folder:images'))
  config = json.loads((tmp_path / 'runs/folder/config.json').read_text())
  assert config['dataset'] == f'folder:{tmp_path / "images"}'
  result = train.run(helpers.parse(train.define_flags, *args, '--steps=4',
                                   '--dataset=folder:./images/'))
  assert helpers.checkpoint_step(tmp_path / 'runs/folder') == 4
  (tmp_path / 'elsewhere').mkdir()
  monkeypatch.chdir(tmp_path / 'elsewhere')
  _, metrics = evaluate.run(helpers.parse(evaluate.define_flags,
                                          '--model_dir=../runs/folder'))
  assert metrics['bits_per_dim'] == pytest.approx(
      result['test_bits_per_dim'], abs=1e-4)
  # A run saved before folders were resolved resumes from where it started.
  monkeypatch.chdir(tmp_path)
  config_file = tmp_path / 'runs/folder/config.json'
  config_file.write_text(json.dumps(dict(config, dataset='folder:images')))
  train.run(helpers.parse(train.define_flags, *args, '--steps=6',
                          '--dataset=folder:images'))
  assert helpers.checkpoint_step(tmp_path / 'runs/folder') == 6
