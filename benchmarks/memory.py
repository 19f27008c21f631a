"""The `memory` benchmark: a training step's memory and time against depth,
with and without `recompute`.

For each coupling and depth D it trains a `CIncFlow` (CInC convolutions)
with and without `recompute=True` and reports:

- the memory one training step allocates: TensorFlow does not track CPU
  allocations (`tf.config.experimental.get_memory_info` reads 0 there), so
  each row runs in a fresh process, which takes a warm-up step, notes its
  resident set, resets the kernel's peak (`/proc/self/clear_refs`) and takes
  `steps` more: the step's memory is the peak over them less the resident
  set before. For the resident set before a step to hold none of the
  previous step's temporaries, glibc hands large blocks back to the system
  when freed (`MALLOC_MMAP_THRESHOLD_`) and oneDNN's kernels, which keep
  freed memory in a cache of their own, are off (`TF_ENABLE_ONEDNN_OPTS=0`,
  TensorFlow's Eigen kernels instead: the same tensors);
- the process's peak resident set over its whole run, which holds what a
  step keeps too: the weights, the optimizer's moments and the traced
  training function (its graph grows with depth, and is larger with
  recompute, which traces every step's inverse and forward twice more);
- the step time, in this process (default kernels): both models of a depth
  side by side, each `train_on_batch` interleaved (`harness.median_ms`).

The ratios are the step's memory against the same model's at the smallest
depth, and the step time with recompute against that without. Their
targets are in the README. Linux only (it reads `/proc`).
"""

import functools
import json
import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from cinc_tfp import flow

from . import harness

# Keeps freed blocks of 64 KiB or more out of the resident set, and oneDNN's
# cache of freed memory out of the way.
_MEMORY_ENV = {'MALLOC_MMAP_THRESHOLD_': '65536', 'TF_ENABLE_ONEDNN_OPTS': '0'}


def _model(image_shape, levels, depth, width, coupling, recompute):
  model = flow.CIncFlow(image_shape, levels=levels, depth=depth, width=width,
                        conv='cinc', coupling=coupling, recompute=recompute)
  model.compile(optimizer=keras.optimizers.Adam(1e-4))
  return model


def _batch(image_shape, batch_size):
  return np.asarray(tf.random.stateless_uniform(
      (batch_size, *image_shape), [0, 1], -0.5, 0.5))


def _status_kb(field):
  with open('/proc/self/status', encoding='ascii') as status:
    for line in status:
      if line.startswith(field + ':'):
        return int(line.split()[1])
  raise RuntimeError(f'no {field} in /proc/self/status')


def measure_step_memory(image_shape, levels, depth, width, coupling,
                        recompute, batch_size, steps=2):
  """`{'step': MB, 'peak': MB}`: what a training step allocates above the
  resident set before it, and the process's peak resident set (run in a
  fresh process: see the module docstring)."""
  model = _model(image_shape, levels, depth, width, coupling, recompute)
  x = _batch(image_shape, batch_size)
  model.initialize(x)
  model.train_on_batch(x)  # Traces and runs the step once.
  before, peak = _status_kb('VmRSS'), _status_kb('VmHWM')
  with open('/proc/self/clear_refs', 'w', encoding='ascii') as clear:
    clear.write('5')  # Resets VmHWM, the peak resident set, to VmRSS.
  for _ in range(steps):
    model.train_on_batch(x)
  step = (_status_kb('VmHWM') - before) / 1024
  return dict(step=step, peak=max(peak, _status_kb('VmHWM')) / 1024)


def _memory_in_fresh_process(**row):
  code = (f'import json; from {__package__} import memory; '
          f'print(json.dumps(memory.measure_step_memory(**{row!r})))')
  result = subprocess.run(
      [sys.executable, '-c', code], capture_output=True, text=True,
      check=False, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
                            **_MEMORY_ENV))
  if result.returncode:
    raise RuntimeError(f'memory row {row} failed:\n{result.stderr[-2000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def time_steps(image_shape, levels, depth, width, coupling, batch_size,
               repeats):
  """Median ms of a training step without and with recompute, interleaved."""
  x = _batch(image_shape, batch_size)
  calls = {}
  for recompute in (False, True):
    model = _model(image_shape, levels, depth, width, coupling, recompute)
    model.initialize(x)
    calls[recompute] = functools.partial(model.train_on_batch, x)
  return harness.median_ms(calls, {name: repeats for name in calls})


def _times(numerator, denominator):
  """'R.RRx', or '-' when the denominator is not above 0 (a step too small
  to register)."""
  return f'{numerator / denominator:.2f}x' if denominator > 0 else '-'


def run_memory(depths=(4, 8, 16, 32), couplings=('affine', 'quad'),
               image_shape=(32, 32, 3), levels=3, width=128, batch_size=64,
               repeats=3, progress=None):
  """Runs the `memory` benchmark and returns its report: a table of step
  memory and time per coupling and depth, and one of ratios. `progress`, if
  given, is called with each row of the first table as it is measured (the
  large rows take many minutes on a CPU)."""
  header = (f'TF {tf.__version__} | CInC, image '
            f'{"x".join(map(str, image_shape))}, L={levels}, width {width}, '
            f'batch {batch_size} | {harness.processors()} | median of '
            f'{repeats} steps')
  timing_rows = [['coupling', 'D', 'step MB', 'step MB (recompute)',
                  'peak MB', 'peak MB (recompute)', 'step ms',
                  'step ms (recompute)']]
  ratio_rows = [['coupling', 'D', f'step MB / at D={depths[0]}',
                 f'step MB / at D={depths[0]} (recompute)',
                 'recompute / stored, peak MB',
                 'recompute / stored, step time']]
  for coupling in couplings:
    first = None
    for depth in depths:
      row = dict(image_shape=tuple(image_shape), levels=levels, depth=depth,
                 width=width, coupling=coupling)
      mb = {recompute: _memory_in_fresh_process(
          recompute=recompute, batch_size=batch_size, **row)
            for recompute in (False, True)}
      first = first or mb
      ms = time_steps(**row, batch_size=batch_size, repeats=repeats)
      timing_rows.append([coupling, str(depth)] + [
          f'{mb[r][key]:.1f}' for key in ('step', 'peak')
          for r in (False, True)] + [f'{ms[r]:.0f}' for r in (False, True)])
      if progress:
        progress(' | '.join(f'{name}: {value}' for name, value in zip(
            timing_rows[0], timing_rows[-1])))
      ratio_rows.append([coupling, str(depth)] + [
          _times(mb[r]['step'], first[r]['step']) for r in (False, True)] + [
              _times(mb[True]['peak'], mb[False]['peak']),
              _times(ms[True], ms[False])])
  return '\n\n'.join([header, harness.markdown(timing_rows),
                      harness.markdown(ratio_rows)])
