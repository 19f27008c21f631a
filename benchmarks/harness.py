"""The timing harness the benchmarks share: interleaved timings, tables.

Every candidate is a call of no arguments returning a tensor (or NumPy
array); `round_times_ms` times them in rounds, each in a fresh random
order, so that the noise of a shared machine, and whatever one call leaves
behind for the next (warm caches and thread pools), hit them alike. Only
ratios of timings taken side by side in one process mean anything: absolute
times drift; `paired_ratio` takes them round by round.
"""

import math
import os
import random
import statistics
import time

__all__ = ['markdown', 'median_ms', 'paired_ratio', 'parse_shapes',
           'processors', 'ratio', 'round_times_ms', 'time_ms',
           'use_threads']


def median_ms(calls, counts):
  """Median ms of each zero-argument call (returning a tensor), timed as
  `round_times_ms` times them."""
  return {name: statistics.median(values)
          for name, values in round_times_ms(calls, counts).items()}


def round_times_ms(calls, counts):
  """{name: [ms of its call in each round]}: each zero-argument call
  (returning a tensor) after one warm-up call each, `counts[name]` timed
  calls each, interleaved by rounds (each in a fresh order, the same from
  run to run), so that machine noise and the effects of one call on the
  next hit the candidates alike. The i-th times of two calls are from the
  same round (`paired_ratio`)."""
  for call in calls.values():
    _wait(call())  # Warm-up: trace and compile.
  times = {name: [] for name in calls}
  order = random.Random(0)
  for _ in range(max(counts.values())):
    names = list(calls)
    order.shuffle(names)
    for name in names:
      if len(times[name]) < counts[name]:
        start = time.perf_counter()
        _wait(calls[name]())
        times[name].append(1e3 * (time.perf_counter() - start))
  return times


def time_ms(call):
  """The time in ms of one call of the zero-argument `call`."""
  start = time.perf_counter()
  _wait(call())
  return 1e3 * (time.perf_counter() - start)


def _wait(result):
  """Fetches a tensor (waiting for it); NumPy results are there already."""
  return result.numpy() if hasattr(result, 'numpy') else result


def ratio(ms, numerator, denominator):
  """'R.RRx', the timing `ms[numerator] / ms[denominator]`, or '-' when
  either was not timed."""
  if numerator not in ms or denominator not in ms:
    return '-'
  return f'{ms[numerator] / ms[denominator]:.2f}x'


def paired_ratio(times, numerator, denominator):
  """'R.RRx (Q1-Q3)': the median of the ratios `numerator / denominator` of
  the times taken side by side (`times[name][i]`, pairs from one round of
  `round_times_ms` or alternating calls), with their quartiles; '-' when
  either was not timed. Each pair shares the machine's speed of its
  moment, so the ratio resolves differences that the medians' ratio, with
  the machine's drift between the calls in it, does not."""
  if numerator not in times or denominator not in times:
    return '-'
  ratios = sorted(a / b for a, b in zip(times[numerator], times[denominator]))
  low, high = _quantile(ratios, 0.25), _quantile(ratios, 0.75)
  return f'{statistics.median(ratios):.2f}x ({low:.2f}-{high:.2f})'


def _quantile(sorted_values, fraction):
  """The value at `fraction` of the way through `sorted_values` (nearest
  rank: the first with at least that fraction of them at or below it)."""
  rank = math.ceil(fraction * len(sorted_values))
  return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def markdown(rows):
  """A Markdown table of `rows` (lists of strings), the first its header."""
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) + ' |'
           for row in rows]
  lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
  return '\n'.join(lines)


def processors():
  """'CPUs N | threads T' for the report headers (T: TensorFlow's thread
  pools, 'default' unless `use_threads` set them)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpus = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
          else os.cpu_count())
  threads = tf.config.threading.get_intra_op_parallelism_threads()
  return f'CPUs {cpus} | threads {threads or "default"}'


def use_threads(threads):
  """Limits TensorFlow to `threads` threads per op and for running ops side
  by side, and the pixel loop to as many (0: leave their defaults). Must run
  before TensorFlow runs any op."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from . import pixel_loop  # pylint: disable=g-import-not-at-top
  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    pixel_loop.use_threads(threads)


def parse_shapes(text, flag='--shapes'):
  """'32x32x3,16x16x12' -> [(32, 32, 3), (16, 16, 12)], or a ValueError."""
  shapes = []
  for item in text.split(','):
    parts = item.strip().lower().split('x')
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
      raise ValueError(
          f'{flag}: expected comma-separated HxWxC of positive ints (e.g. '
          f'32x32x3,16x16x12), got {item.strip()!r}.')
    shapes.append(tuple(int(p) for p in parts))
  return shapes
