"""Helpers of the train/ command tests: tiny runs, subprocesses, stderr."""

import os
import re
import socket
import subprocess
import sys

from absl import flags
import numpy as np
import tensorflow as tf

from cinc_tfp import run as run_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A flow small enough to train a few steps in seconds.
TINY = ('--image_size=8', '--levels=2', '--depth=1', '--width=8',
        '--batch_size=8')
# TINY runs that do not need their SavedModel skip the export.
QUICK = (*TINY, '--noexport')

# Lines that TensorFlow's native logger writes to stderr on its own, whatever
# TF_CPP_MIN_LOG_LEVEL says (e.g. while tensorflow_datasets loads); not ours.
_NATIVE_LOG = re.compile(
    r'^([IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]|WARNING: All log '
    r'messages before absl::InitializeLog|To enable the following '
    r'instructions:)')
# absl's hint after a flag parsing error.
_ABSL_HINT = 'Pass --helpshort or --helpfull to see help on flags.'


def free_port():
  """A local TCP port free right now (for a test cluster)."""
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def env(**extra):
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', **extra)


def command(module, *args):
  return [sys.executable, '-m', f'train.{module}', *args]


def run(module, *args, timeout=240, **popen_kwargs):
  """Runs `python -m train.MODULE ARGS` from the repository root."""
  return subprocess.run(
      command(module, *args), cwd=ROOT, env=env(), capture_output=True,
      text=True, timeout=timeout, check=False, **popen_kwargs)


def served_on_cpu(saved_model):
  """Runs `tools/served_on_cpu.py` (a step of `tools/gpu_check.sh`) on
  `saved_model` in a fresh process that sees no GPU; its printed line."""
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'tools', 'served_on_cpu.py'),
       str(saved_model)], cwd='/', env=env(CUDA_VISIBLE_DEVICES=''),
      capture_output=True, text=True, timeout=180, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout.strip()


def message_lines(stderr):
  """stderr without TensorFlow's native log lines and absl's help hint."""
  return [line for line in stderr.splitlines()
          if line.strip() and not _NATIVE_LOG.match(line) and
          line.strip() != _ABSL_HINT]


def assert_fails_with_one_line(result, *words):
  """Non-zero exit, no traceback, one line on stderr that has `words`."""
  assert result.returncode != 0, result.stdout + result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  lines = message_lines(result.stderr)
  assert len(lines) == 1, result.stderr
  for word in words:
    assert word in lines[0], lines[0]
  return lines[0]


def printed_bits_per_dim(output):
  """X of the last line 'test bits/dim: X' (native logs, e.g. gRPC's at a
  multi-worker shutdown, may follow it in a merged stdout and stderr)."""
  lines = [line for line in output.strip().splitlines()
           if line.startswith('test bits/dim: ')]
  assert lines, output[-2000:]
  return float(lines[-1].split(':')[1])


def parse(define_flags, *args):
  """Fresh flag values of a command, parsed from `args`."""
  flag_values = flags.FlagValues()
  define_flags(flag_values)
  flag_values(['command', *args])
  return flag_values


def train_flags(*args):
  """Parsed flags of `train.train`."""
  from train import train  # pylint: disable=g-import-not-at-top
  return parse(train.define_flags, *args)


def checkpoint_step(model_dir):
  """The step of a run directory's newest checkpoint, or None."""
  path = run_lib.RunDirectory(model_dir).latest_checkpoint()
  return int(path.rsplit('-', 1)[1]) if path else None


def assert_same_checkpoints(path, expected_path):
  """The model and optimizer variables of two checkpoints are equal."""
  found, expected = (tf.train.load_checkpoint(str(p))
                     for p in (path, expected_path))
  names = [name for name in expected.get_variable_to_shape_map()
           if name.startswith(('model/', 'optimizer/'))]
  assert len(names) > 100
  for name in names:
    np.testing.assert_allclose(found.get_tensor(name),
                               expected.get_tensor(name), rtol=1e-5,
                               atol=1e-6, err_msg=name)
