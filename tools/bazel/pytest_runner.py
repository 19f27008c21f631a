"""Main of every //:test_* target: runs one pytest module as a Bazel test.

The test modules are pytest-style (plain ``def test_...`` functions, fixtures
such as ``tmp_path``, ``parametrize``), so a ``py_test`` cannot run them as its
own main. Each ``py_test`` in //:BUILD uses this file as ``main`` and passes the
module's path (relative to the runfiles root, the test's working directory) in
``args``. The exit status is pytest's: 0 only if tests ran and passed (pytest's
5, "no tests collected", fails the target).

It also maps Bazel's test protocol onto pytest:
  * ``XML_OUTPUT_FILE``      -> ``--junitxml`` (per-test results in test.xml);
  * ``TEST_TMPDIR``          -> ``--basetemp`` (``tmp_path`` lives in Bazel's
                                per-test temporary directory);
  * ``TESTBRIDGE_TEST_ONLY`` -> ``-k`` (``bazel test --test_filter=EXPR``);
  * ``TEST_PREMATURE_EXIT_FILE`` is left to Bazel.
"""

import os
import sys

import pytest


def pytest_args(argv, environ):
  """The pytest command line for `argv` (test module paths, extra flags)."""
  args = list(argv) + ['-q', '-p', 'no:cacheprovider']
  xml_output = environ.get('XML_OUTPUT_FILE')
  if xml_output:
    args += ['--junitxml', xml_output]
  tmpdir = environ.get('TEST_TMPDIR')
  if tmpdir:
    args += ['--basetemp', os.path.join(tmpdir, 'pytest')]
  test_filter = environ.get('TESTBRIDGE_TEST_ONLY')
  if test_filter:
    args += ['-k', test_filter]
  return args


def main(argv):
  if not argv:
    sys.stderr.write('usage: pytest_runner.py TEST_MODULE.py [PYTEST_ARGS...]\n')
    return 2
  return int(pytest.main(pytest_args(argv, os.environ)))


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
