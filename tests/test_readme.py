"""The README, tested verbatim.

Every command of the README's `sh` code blocks runs as written in one fresh
working directory: those of one run directory in order (so that evaluate,
sample and export find the run that train made), side by side with the
others, which run in order too. Then its `python` blocks run, in order, as
one script in the same directory (later snippets use what earlier ones
made). The only change to a command is flags appended from `SHORTER`, which
make runs smaller (absl takes the last value of a repeated flag). A block
whose preceding paragraph says "not run by the README test" is skipped (the
paragraph says why); one whose paragraph says "Run by CI as written" must be
made of lines of `.ci/run`.
"""

import concurrent.futures
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests import train_helpers as helpers

README = os.path.join(helpers.ROOT, 'README.md')
CI_SCRIPT = os.path.join(helpers.ROOT, '.ci', 'run')
SKIP = 'not run by the readme test'
RUN_BY_CI = 'run by ci as written'

# Flags appended to a command, by module, so that it runs in seconds.
SHORTER = {
    'train.train': ('--steps=4', '--steps_per_epoch=2', '--checkpoint_every=2',
                    '--depth=1', '--width=8'),
    'benchmarks': ('--shapes=8x8x12', '--batch_sizes=2', '--repeats=1',
                        '--raster_repeats=1', '--image_shape=8x8x3',
                        '--levels=2', '--depth=1', '--width=8',
                        '--num_samples=2', '--batch_size_train=2',
                        # Every model row and the SavedModel timing are
                        # tested in test_benchmark.
                        '--models=CInC+affine,Glow', '--served_models='),
}


def readme_blocks(text):
  """`(language, code, paragraph before it)` of every fenced code block."""
  blocks = []
  lines = text.splitlines()
  i = 0
  while i < len(lines):
    fence = re.match(r'^```(\S*)\s*$', lines[i])
    if not fence:
      i += 1
      continue
    before = []
    j = i - 1
    while j >= 0 and not lines[j].strip():
      j -= 1
    while j >= 0 and lines[j].strip():
      before.insert(0, lines[j])
      j -= 1
    end = lines.index('```', i + 1)
    blocks.append((fence.group(1), '\n'.join(lines[i + 1:end]),
                   ' '.join(before)))
    i = end + 1
  return blocks


def shell_commands(code):
  """The commands of a shell block: `\\`-continued lines joined, comments
  dropped, each split into its words."""
  return [shlex.split(line, comments=True)
          for line in code.replace('\\\n', ' ').splitlines()
          if shlex.split(line, comments=True)]


def _readme():
  with open(README, encoding='utf-8') as file:
    return readme_blocks(file.read())


def _skipped(paragraph):
  return SKIP in ' '.join(paragraph.lower().split())


def test_every_block_has_a_language_and_skips_say_why():
  blocks = _readme()
  assert blocks
  for language, code, paragraph in blocks:
    assert language in ('sh', 'python', 'text'), code[:200]
    if _skipped(paragraph):
      reason = paragraph.lower().split(SKIP, 1)[1]
      assert len(reason.strip(' :).')) > 10, paragraph


def test_commands_said_to_run_in_ci_are_in_the_ci_script():
  with open(CI_SCRIPT, encoding='utf-8') as file:
    ci_lines = {' '.join(shlex.split(line, comments=True))
                for line in file}
  blocks = [code for language, code, paragraph in _readme()
            if language == 'sh' and
            RUN_BY_CI in ' '.join(paragraph.lower().split())]
  assert blocks
  for code in blocks:
    for words in shell_commands(code):
      assert ' '.join(words) in ci_lines, f'{words} is not in {CI_SCRIPT}'


def _module(words):
  """The module a README command runs: `python -m M`, or `cinc-NAME`, the
  console script of `train.NAME`."""
  if words[:2] == ['python', '-m']:
    return words[2]
  if words[0] == 'cinc-benchmark':
    return 'benchmarks'
  if words[0].startswith('cinc-'):
    return 'train.' + words[0][len('cinc-'):]
  return None


def _run_directory(words):
  """The run directory a command reads or writes (`--model_dir`, or the
  run above a `--saved_model`), or None."""
  for word in words:
    for flag in ('--model_dir=', '--saved_model='):
      if word.startswith(flag):
        return word[len(flag):].split('/saved_model')[0]
  return None


def lanes(commands):
  """The commands grouped for running side by side: those of one run
  directory, in their order, in one lane; the others, in order, in another."""
  grouped = {}
  for words in commands:
    grouped.setdefault(_run_directory(words), []).append(words)
  return list(grouped.values())


def _run_lane(commands, cwd, env):
  """Runs `commands` one after the other; the first failure's message, or
  None."""
  for words in commands:
    result = subprocess.run(
        [*words, *SHORTER.get(_module(words), ())], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0 or 'Traceback' in result.stderr:
      return (f'{" ".join(words)} failed:\n{result.stdout[-2000:]}\n'
              f'{result.stderr[-3000:]}')
  return None


@pytest.mark.slow  # Every README command and snippet: about 2 minutes.
def test_readme_commands_and_snippets_run_as_written(tmp_path):
  blocks = _readme()
  commands = []
  for language, code, paragraph in blocks:
    if (language == 'sh' and not _skipped(paragraph) and
        RUN_BY_CI not in ' '.join(paragraph.lower().split())):
      commands.extend(shell_commands(code))
  assert len(commands) >= 9
  for words in commands:
    assert _module(words), f'not a command of this package: {words}'
  env = helpers.env(
      TMPDIR=str(tmp_path),  # Where the default --model_dir lands.
      PYTHONPATH=helpers.ROOT,
      PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
  # The lanes share nothing but the working directory: they run side by side.
  with concurrent.futures.ThreadPoolExecutor() as pool:
    failures = list(pool.map(lambda lane: _run_lane(lane, tmp_path, env),
                             lanes(commands)))
  assert not any(failures), '\n'.join(filter(None, failures))
  for made in ('cinc_tfp_run/saved_model/saved_model.pb', 'runs/digits/config.json',
               'runs/digits/saved_model/saved_model.pb', 'samples.png',
               'interp.png', 'four.png', 'exported/digits/saved_model.pb'):
    assert (tmp_path / made).exists(), made

  script = '\n\n'.join(code for language, code, paragraph in blocks
                       if language == 'python' and not _skipped(paragraph))
  result = subprocess.run(
      [sys.executable, '-c', script], cwd=tmp_path, env=env,
      capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / 'exported' / 'cinc' / 'saved_model.pb').exists()


def test_readme_parsing():
  text = ('Intro.\n\n```sh\npython -m a --x=1  # note\npython -m b \\\n'
          '  --y=2\n```\n\nNot run by the README test: needs a GPU.\n'
          '```python\nprint(1)\n```\n')
  blocks = readme_blocks(text)
  assert [(language, paragraph) for language, _, paragraph in blocks] == [
      ('sh', 'Intro.'),
      ('python', 'Not run by the README test: needs a GPU.')]
  assert shell_commands(blocks[0][1]) == [['python', '-m', 'a', '--x=1'],
                                          ['python', '-m', 'b', '--y=2']]
  assert _module(['cinc-sample', '--x']) == 'train.sample'
  assert _module(['cinc-benchmark', 'layers']) == 'benchmarks'
  assert lanes([['a', '--model_dir=r'], ['b'], ['c', '--saved_model=r/saved_model'],
                ['d']]) == [[['a', '--model_dir=r'],
                             ['c', '--saved_model=r/saved_model']],
                            [['b'], ['d']]]
  assert _module(['ls']) is None
  assert _skipped(blocks[1][2])
