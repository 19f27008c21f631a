"""Side-by-side timing of the invertible image layers.

Usage:

  python -m train.benchmark layers [--batch_size=100] [--repeats=20]
      [--shapes=32x32x3,16x16x12,8x8x48] [--raster_repeats=3] [--jit]

`layers` times, for each image shape HxWxC, CInC (3x3) forward and inverse
(row-wise solver and the pixel-by-pixel raster reference), Emerging forward
and inverse and the 1x1 convolution forward and inverse, each compiled once
with `tf.function` (XLA with `--jit`). Each timing is the median over
`--repeats` calls after a warm-up call; the candidates are interleaved within
each round, so that machine noise hits them alike. Absolute times drift on a
shared machine: only the ratios, measured side by side, are meaningful.
"""

import os
import statistics
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS

# (name, bijector key, direction); 'raster' is CInC's reference inverse.
_CANDIDATES = (
    ('CInC fwd', 'cinc', 'forward'),
    ('CInC inv', 'cinc', 'inverse'),
    ('raster inv', 'cinc', 'inverse_reference'),
    ('Emerging fwd', 'emerging', 'forward'),
    ('Emerging inv', 'emerging', 'inverse'),
    ('1x1 fwd', 'conv1x1', 'forward'),
    ('1x1 inv', 'conv1x1', 'inverse'),
)
# (column title, numerator, denominator, target test, shape it applies to).
_RATIOS = (
    ('raster / CInC inv (>= 10x @ 32x32x3)', 'raster inv', 'CInC inv',
     lambda r: r >= 10., (32, 32, 3)),
    ('CInC inv / fwd (<= 3x)', 'CInC inv', 'CInC fwd', lambda r: r <= 3., None),
    ('Emerging inv / CInC inv (>= 1.8x)', 'Emerging inv', 'CInC inv',
     lambda r: r >= 1.8, None),
)


def parse_shapes(text):
  """'32x32x3,16x16x12' -> [(32, 32, 3), (16, 16, 12)], or a ValueError."""
  shapes = []
  for item in text.split(','):
    parts = item.strip().lower().split('x')
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
      raise ValueError(
          f'--shapes: expected comma-separated HxWxC of positive ints (e.g. '
          f'32x32x3,16x16x12), got {item.strip()!r}.')
    shapes.append(tuple(int(p) for p in parts))
  return shapes


def _build(shape, seed):
  """The three bijectors for `shape`, with weights perturbed from the init."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cinc_tfp import bijectors  # pylint: disable=g-import-not-at-top
  channels = shape[-1]
  layers = {
      'cinc': bijectors.CIncConv2D(channels=channels, seed=(seed, 1)),
      'emerging': bijectors.EmergingConv2D(channels=channels, seed=(seed, 2)),
      'conv1x1': bijectors.Conv1x1(channels=channels, seed=(seed, 3)),
  }
  for n, layer in enumerate(layers.values()):
    for m, variable in enumerate(layer.trainable_variables):
      variable.assign_add(0.05 * tf.random.stateless_normal(
          variable.shape, (seed, 100 * n + m), dtype=variable.dtype))
  return layers


def time_layers(shape, batch_size, repeats, raster_repeats, jit, seed=0):
  """Median ms per call of each candidate on `[batch_size, *shape]` images."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  layers = _build(shape, seed)
  spec = tf.TensorSpec([batch_size, *shape], tf.float32)
  x = tf.random.stateless_normal(spec.shape, [seed, 1])
  functions, inputs, counts = {}, {}, {}
  for name, key, direction in _CANDIDATES:
    if name == 'raster inv' and not raster_repeats:
      continue
    method = getattr(layers[key], direction)
    # A fresh symbolic input per trace, so the bijector cache never hits; the
    # reduction makes `.numpy()` wait for (and fetch) the whole result.
    functions[name] = tf.function(
        lambda t, method=method: tf.reduce_sum(method(t)),
        input_signature=[spec], jit_compile=jit or None)
    inputs[name] = layers[key].forward(x) if direction != 'forward' else x
    counts[name] = raster_repeats if name == 'raster inv' else repeats
    functions[name](inputs[name]).numpy()  # Warm-up: trace and compile.
  times = {name: [] for name in functions}
  for round_ in range(max(counts.values())):
    names = list(functions)
    names = names[round_ % len(names):] + names[:round_ % len(names)]
    for name in names:
      if len(times[name]) < counts[name]:
        start = time.perf_counter()
        functions[name](inputs[name]).numpy()
        times[name].append(1e3 * (time.perf_counter() - start))
  return {name: statistics.median(values) for name, values in times.items()}


def _markdown(rows):
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) + ' |'
           for row in rows]
  lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
  return '\n'.join(lines)


def run_layers(batch_size=100, repeats=20, shapes=((32, 32, 3),),
               raster_repeats=3, jit=False):
  """Runs the `layers` benchmark and returns its report (two tables)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpus = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
          else os.cpu_count())
  header = (f'TF {tf.__version__} | batch {batch_size} | CPUs {cpus} | '
            f'jit {jit} | median of {repeats} (raster {raster_repeats})')
  names = [name for name, _, _ in _CANDIDATES]
  timing_rows = [['shape'] + [f'{name} ms' for name in names]]
  ratio_rows = [['shape'] + [ratio[0] for ratio in _RATIOS]]
  for shape in shapes:
    ms = time_layers(shape, batch_size, repeats, raster_repeats, jit)
    label = 'x'.join(map(str, shape))
    timing_rows.append(
        [label] + [f'{ms[n]:.2f}' if n in ms else '-' for n in names])
    cells = [label]
    for _, numerator, denominator, meets, only_shape in _RATIOS:
      if numerator not in ms:
        cells.append('-')
        continue
      ratio = ms[numerator] / ms[denominator]
      verdict = ('' if only_shape not in (None, tuple(shape)) else
                 ' meets' if meets(ratio) else ' MISSES')
      cells.append(f'{ratio:.2f}x{verdict}')
    ratio_rows.append(cells)
  return '\n\n'.join([header, _markdown(timing_rows), _markdown(ratio_rows)])


def _layers_from_flags():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel('ERROR')  # Seven tf.functions are no "retracing".
  return run_layers(FLAGS.batch_size, FLAGS.repeats, parse_shapes(FLAGS.shapes),
                    FLAGS.raster_repeats, FLAGS.jit)


# Benchmark name -> function of no arguments (reading FLAGS) returning a report.
BENCHMARKS = {'layers': _layers_from_flags}


def _define_flags():
  """Defines the flags; only when run as a program, so importing is harmless."""
  flags.DEFINE_integer('batch_size', 100, 'Images per call.', lower_bound=1)
  flags.DEFINE_integer('repeats', 20, 'Timed calls per candidate (median).',
                       lower_bound=1)
  flags.DEFINE_string('shapes', '32x32x3,16x16x12,8x8x48',
                      'Comma-separated image shapes HxWxC.')
  flags.DEFINE_integer('raster_repeats', 3,
                       'Timed calls of the slow raster reference (0: skip it).',
                       lower_bound=0)
  flags.DEFINE_bool('jit', False, 'Compile with XLA (jit_compile=True).')

  def check_shapes(text):
    try:
      parse_shapes(text)
    except ValueError as error:
      raise flags.ValidationError(str(error)) from None
    return True

  flags.register_validator('shapes', check_shapes)


def main(argv):
  if len(argv) != 2 or argv[1] not in BENCHMARKS:
    got = ' '.join(argv[1:]) or 'nothing'
    sys.exit(f'train.benchmark: expected one benchmark name out of '
             f'{sorted(BENCHMARKS)}, got {got!r}.')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TF's import.
  print(BENCHMARKS[argv[1]](), flush=True)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
