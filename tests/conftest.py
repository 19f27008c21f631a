"""Test set-up: quiet TensorFlow's C++ logging before it is imported."""

import os

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# The longest modules, first: with `-n 2` and `--dist loadfile` (pytest.ini)
# each module runs whole on one worker, and one of these started last would
# run alone at the end while the other worker idles.
# Measured on two cores (2026-12-05, seconds per module): 244, 227, 210,
# 192, 118, 105, 89, 76, 67, 43, 40; the rest under 35.
LONGEST_FIRST = ('test_trainer.py', 'test_readme.py', 'test_benchmarks.py',
                 'test_flow.py', 'test_train.py', 'test_conditional.py',
                 'test_evaluate_sample.py', 'test_export.py', 'test_run.py',
                 'test_packaging.py', 'test_cinc_conv.py')


def pytest_collection_modifyitems(items):
  """Runs the modules of `LONGEST_FIRST` first, in that order; the others
  keep theirs."""
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_addoption(parser):
  parser.addoption(
      '--full', action='store_true',
      help='run the checks marked slow in their full configuration (by '
      'default, and in CI, they run a shorter one)')


@pytest.fixture
def full(request):
  """Whether `--full` was given: a slow check then runs whole."""
  return request.config.getoption('--full')
