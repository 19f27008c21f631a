"""Prints one closing line for a `bazel test` run, counted in test cases.

  python3 tools/bazel/test_summary.py BAZEL_OUTPUT.log TESTLOGS_DIR

Reads the per-target result lines of Bazel's summary in BAZEL_OUTPUT.log
(``//:test_actnorm   PASSED in 12.3s``, ``(cached) PASSED``, ``FAILED``,
``TIMEOUT``, ...) and each such target's ``test.xml`` (written by pytest
through tools/bazel/pytest_runner.py) under TESTLOGS_DIR
(`bazel info bazel-testlogs`), and prints

  bazel: N passed, N failed, N skipped

so a log reader sees how many pytest cases ran, as after a plain pytest run.
A target that failed without any failing case in its test.xml (a timeout, a
crash, a missing test.xml) counts as one failure. Exits 1 when no result line
was found at all, else 0: the caller decides on success from Bazel's status.
"""

import os
import re
import sys
import xml.etree.ElementTree as ElementTree

_RESULT = re.compile(
    r'^(//[^\s:]*:\S+|//\S+)\s+(?:\(cached\)\s+)?'
    r'(PASSED|FLAKY|FAILED|TIMEOUT|NO STATUS|INCOMPLETE|REMOTE FAILURE|'
    r'FAILED TO BUILD)\b')


def results(log_text):
  """{label: status} for each test result line of a Bazel summary."""
  return {m.group(1): m.group(2)
          for m in map(_RESULT.match, log_text.splitlines()) if m}


def xml_path(testlogs, label):
  package, _, name = label[2:].partition(':')
  if not name:  # //pkg/name is //pkg/name:name
    name = package.rsplit('/', 1)[-1]
  return os.path.join(testlogs, package, name, 'test.xml')


def counts(path):
  """(passed, failed, skipped) test cases in a JUnit XML file."""
  root = ElementTree.parse(path).getroot()
  suites = [root] if root.tag == 'testsuite' else root.iter('testsuite')
  total = failed = skipped = 0
  for suite in suites:
    total += int(suite.get('tests', 0))
    failed += int(suite.get('failures', 0)) + int(suite.get('errors', 0))
    skipped += int(suite.get('skipped', 0))
  return total - failed - skipped, failed, skipped


def main(argv):
  log_path, testlogs = argv
  with open(log_path, encoding='utf-8', errors='replace') as f:
    found = results(f.read())
  passed = failed = skipped = 0
  for label, status in sorted(found.items()):
    good = status in ('PASSED', 'FLAKY')
    try:
      p, f, s = counts(xml_path(testlogs, label))
    except (OSError, ElementTree.ParseError, ValueError):
      p, f, s = 0, 0, 0
    if not good and not f:
      f = 1
    passed, failed, skipped = passed + p, failed + f, skipped + s
  line = 'bazel: %d passed, %d failed' % (passed, failed)
  if skipped:
    line += ', %d skipped' % skipped
  print(line)
  return 0 if found else 1


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
