"""The distribution: one top-level package, and console scripts that work
from any directory."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests import train_helpers as helpers

COMMANDS = ('train', 'evaluate', 'sample', 'export', 'benchmark')


def _env():
  """The environment without the checkout on the path."""
  env = helpers.env()
  env.pop('PYTHONPATH', None)
  return env


@pytest.mark.slow  # Builds the wheel: about 20 s.
def test_the_wheel_claims_only_cinc_tfp_and_installs_the_commands(tmp_path):
  # From a copy, so that setuptools' build/ folder is not left in the checkout.
  source = tmp_path / 'source'
  shutil.copytree(helpers.ROOT, source, ignore=shutil.ignore_patterns(
      '.git', 'build', '*.egg-info', '__pycache__', 'bazel-*'))
  subprocess.run(
      [sys.executable, '-m', 'pip', 'wheel', '--no-deps',
       '--no-build-isolation', '-q', '-w', str(tmp_path), str(source)],
      check=True, capture_output=True, env=_env(), cwd=tmp_path)
  [wheel] = [name for name in os.listdir(tmp_path) if name.endswith('.whl')]
  with zipfile.ZipFile(tmp_path / wheel) as archive:
    names = archive.namelist()
    entry_points = archive.read(next(
        name for name in names if name.endswith('entry_points.txt'))).decode()
  top = {name.split('/')[0] for name in names
         if not name.split('/')[0].endswith('.dist-info')}
  assert top == {'cinc_tfp'}
  assert 'cinc_tfp/commands/train.py' in names
  assert 'cinc_tfp/benchmarks/__main__.py' in names
  for command in COMMANDS:
    assert f'cinc-{command} = ' in entry_points


# One command of each installed package (the README test runs cinc-sample).
@pytest.mark.parametrize('command', ['train', 'benchmark'])
def test_console_scripts_run_from_any_directory(command, tmp_path):
  script = os.path.join(os.path.dirname(sys.executable), f'cinc-{command}')
  result = subprocess.run([script, '--helpshort'], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=120,
                          check=False)
  # absl's --helpshort prints the command's flags, then exits with 1.
  assert 'Traceback' not in result.stderr, result.stderr[-2000:]
  flag = '--shapes' if command == 'benchmark' else '--model_dir'
  assert flag in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
  # Before the flags, the command's docstring, as `python -m` prints it.
  usage = ('python -m benchmarks layers' if command == 'benchmark' else
           'python -m train.train [--model_dir=DIR]')
  assert usage in result.stdout, result.stdout[:2000]
  if command == 'benchmark':  # Runs one, with the modules it loads late.
    result = subprocess.run(
        [script, 'layers', '--batch_sizes=1', '--shapes=4x4x3',
         '--repeats=1', '--raster_repeats=0', '--threads=1'], cwd=tmp_path,
        env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '| 4x4x3 |' in result.stdout, result.stdout[-2000:]


def test_no_generic_top_level_package_is_importable(tmp_path):
  result = subprocess.run(
      [sys.executable, '-c', 'import train'],
      cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
      check=False)
  assert "No module named 'train'" in result.stderr, result.stderr[-2000:]
