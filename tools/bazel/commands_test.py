"""The //:cinc-COMMAND binaries, run as `bazel run` runs them: a whole tiny cycle.

Each binary (a `py_binary` over tools/bazel/run_module.py) is in this test's
runfiles; the test trains a tiny flow for a few steps on the embedded digits,
then evaluates, samples from and exports it, each through its binary, and
checks what each wrote.
"""

import json
import os
import pathlib
import subprocess

import pytest

TINY = ('--image_size=8', '--levels=2', '--depth=1', '--width=8',
        '--batch_size=8')


def _binary(name):
  path = pathlib.Path(name)
  assert path.is_file(), f'{name} is not in the runfiles'
  return str(path.resolve())


def _run(name, *flags):
  result = subprocess.run([_binary(name), *flags], capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp('run') / 'run'
  _run('cinc-train', f'--model_dir={directory}', *TINY, '--steps=3',
       '--steps_per_epoch=3', '--noexport')
  return directory


def test_train_writes_a_run_directory(run_dir):
  config = json.loads((run_dir / 'config.json').read_text())
  assert config['depth'] == 1
  assert (run_dir / 'samples.png').stat().st_size > 0


def test_evaluate_sample_and_export_read_it(run_dir, tmp_path):
  assert 'bits/dim' in _run('cinc-evaluate', f'--model_dir={run_dir}')
  _run('cinc-sample', f'--model_dir={run_dir}', f'--output={tmp_path / "s.png"}',
       '--num_samples=4')
  assert (tmp_path / 's.png').stat().st_size > 0
  _run('cinc-export', f'--model_dir={run_dir}', f'--output={tmp_path / "m"}')
  assert (tmp_path / 'm' / 'saved_model.pb').is_file()
