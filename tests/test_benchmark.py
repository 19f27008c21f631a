"""Tests of the `train.benchmark` command line, on a tiny configuration."""

import os
import subprocess
import sys

import pytest

from train import benchmark

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(
      [sys.executable, '-m', 'train.benchmark', *args], cwd=_ROOT, env=env,
      capture_output=True, text=True, timeout=60, check=False)


def _table(report, title):
  """The rows (lists of cells) of the markdown table whose header has title."""
  for block in report.split('\n\n'):
    lines = block.splitlines()
    if lines and lines[0].startswith('| shape') and title in lines[0]:
      return [[c.strip() for c in line.strip('|').split('|')]
              for line in lines if not line.startswith('|-')]
  raise AssertionError(f'no table with {title!r} in:\n{report}')


def test_layers_report_has_every_candidate_and_ratio():
  report = benchmark.run_layers(batch_size=2, repeats=1, shapes=[(4, 4, 4)],
                                raster_repeats=1)
  header = report.splitlines()[0]
  for field in ('TF ', 'batch 2', 'CPUs ', 'jit False'):
    assert field in header
  timings = _table(report, 'CInC fwd ms')
  assert timings[0] == ['shape'] + [f'{name} ms' for name, _, _ in
                                    benchmark._CANDIDATES]
  assert len(timings) == 2 and timings[1][0] == '4x4x4'
  assert all(float(cell) > 0 for cell in timings[1][1:])
  ratios = _table(report, 'CInC inv / fwd')
  assert ratios[0][0] == 'shape' and len(ratios[0]) == 4
  assert ratios[1][0] == '4x4x4'
  assert all(cell.split('x')[0].replace('.', '').isdigit()
             for cell in ratios[1][1:])
  # The raster target is for 32x32x3 only; the other two are always judged.
  assert ratios[1][1].endswith('x')
  assert all(cell.endswith((' meets', ' MISSES')) for cell in ratios[1][2:])


@pytest.mark.parametrize('text, expected', [
    ('32x32x3', [(32, 32, 3)]),
    ('4x4x4, 8X8x12', [(4, 4, 4), (8, 8, 12)]),
])
def test_parse_shapes(text, expected):
  assert benchmark.parse_shapes(text) == expected


@pytest.mark.parametrize('text', ['', '4x4', '4x4x0', '4x-4x4', 'axbxc', '4x4x4,'])
def test_parse_shapes_rejects_malformed(text):
  with pytest.raises(ValueError, match='--shapes'):
    benchmark.parse_shapes(text)


def test_unknown_benchmark_fails_with_one_line():
  result = _run('nope')
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and 'nope' in lines[0] and 'layers' in lines[0]


@pytest.mark.parametrize('flag, name', [
    ('--batch_size=-1', 'batch_size'),
    ('--shapes=32x32', 'shapes'),
    ('--repeats=0', 'repeats'),
])
def test_bad_flag_fails_clearly(flag, name):
  result = _run('layers', flag)
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr
  assert f'--{name}' in result.stderr.splitlines()[0]
