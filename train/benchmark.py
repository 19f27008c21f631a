"""Side-by-side timing of the invertible image layers.

Usage:

  python -m train.benchmark layers [--batch_sizes=1,10,100,256] [--repeats=20]
      [--shapes=32x32x3,16x16x12,8x8x48] [--raster_repeats=3] [--jit]
      [--threads=0]
  python -m train.benchmark models [--image_shape=32x32x3] [--levels=3]
      [--depth=8] [--width=128] [--num_samples=1,16,100] [--batch_size_train=64]
      [--repeats=9] [--paper_size] [--models=CInC+affine,Glow] [--threads=0]

`layers` times, for each batch size and image shape HxWxC, CInC (3x3)
forward and inverse (by the row-wise solver, computing its matrices or with
an `InversePlan`, and by the pixel-by-pixel raster reference, the
sequential solver of the papers, in TensorFlow ops and compiled by numba as
`train.pixel_loop`), Emerging forward and inverse, and the 1x1 convolution
forward and inverse, each TensorFlow one compiled once with `tf.function`
(XLA with `--jit`). Each is timed per call from Python, so a TensorFlow
call's fixed cost (about 0.1-0.3 ms here) is in its time, as numba's much
smaller one is in the pixel loop's. Each timing is the median over
`--repeats` calls after a warm-up call; the candidates are interleaved within
each round, so that machine noise hits them alike. Absolute times drift on a
shared machine: only the ratios, measured side by side, are meaningful.

`models` times whole `CIncFlow`s (CInC+quad, CInC+affine, Emerging+affine and
Glow = 1x1+affine, at `--width`; CInC+quad again with the width that matches
the Glow row's parameter count) and TFP's own `tfb.Glow` (the same number of
steps, its coupling networks' hidden width matched the same way; trained
through `TransformedDistribution.log_prob`, which runs each of its networks
twice, once for the inverse and once for the log-determinant): drawing
each number of `--num_samples` images (a report each) from fixed weights,
and one Adam step on the log-likelihood of a batch of `--batch_size_train`
random images (on another instance of the model), each a `tf.function`
traced once and warmed up, timed interleaved as above. With `--paper_size` it repeats all of
it at the paper's L=3, D=32, width 512 (slow).

`--threads=1` runs TensorFlow on one thread, the one-core setting in which the
papers timed their CPU sampling; by default it uses every core.
"""

import functools
import math
import os
import statistics
import sys
import time

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS

# (name, bijector key, direction); 'inverse_reference' is the pixel-by-pixel
# raster inverse, the sequential solver the CInC and Emerging papers used.
# 'planned_inverse' is the inverse with the layer's `InversePlan` (matrices
# computed once, as a flow's decode and a SavedModel use it); 'pixel_loop'
# the same raster algorithm compiled by numba (`train.pixel_loop`), float64.
_CANDIDATES = (
    ('CInC fwd', 'cinc', 'forward'),
    ('CInC inv', 'cinc', 'inverse'),
    ('CInC inv (plan)', 'cinc', 'planned_inverse'),
    ('pixel loop inv', 'cinc', 'pixel_loop'),
    ('raster inv', 'cinc', 'inverse_reference'),
    ('Emerging fwd', 'emerging', 'forward'),
    ('Emerging inv', 'emerging', 'inverse'),
    ('Emerging raster inv', 'emerging', 'inverse_reference'),
    ('1x1 fwd', 'conv1x1', 'forward'),
    ('1x1 inv', 'conv1x1', 'inverse'),
    ('1x1 fwd (TFP LU)', 'scale_matvec_lu', 'forward'),
    ('1x1 inv (TFP LU)', 'scale_matvec_lu', 'inverse'),
)
# (column title, numerator, denominator, target test or None, shape it
# applies to).
_RATIOS = (
    ('raster / CInC inv (>= 10x @ 32x32x3)', 'raster inv', 'CInC inv',
     lambda r: r >= 10., (32, 32, 3)),
    ('CInC inv / fwd (<= 3x)', 'CInC inv', 'CInC fwd', lambda r: r <= 3., None),
    ('pixel loop / CInC inv (plan) (no target)', 'pixel loop inv',
     'CInC inv (plan)', None, None),
    ('CInC inv / CInC inv (plan) (no target)', 'CInC inv', 'CInC inv (plan)',
     None, None),
    ('Emerging inv / CInC inv (no target)', 'Emerging inv', 'CInC inv', None,
     None),
    ('Emerging / CInC, raster inv (no target)', 'Emerging raster inv',
     'raster inv', None, None),
    ('TFP LU / 1x1 inv (no target)', '1x1 inv (TFP LU)', '1x1 inv', None,
     None),
)


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


def _median_ms(calls, counts):
  """Median ms of each zero-argument call (returning a tensor), after one
  warm-up call each; `counts[name]` timed calls each, interleaved by rounds
  (in a rotating order), so that machine noise hits the candidates alike."""
  for call in calls.values():
    _wait(call())  # Warm-up: trace and compile.
  times = {name: [] for name in calls}
  for round_ in range(max(counts.values())):
    names = list(calls)
    names = names[round_ % len(names):] + names[:round_ % len(names)]
    for name in names:
      if len(times[name]) < counts[name]:
        start = time.perf_counter()
        _wait(calls[name]())
        times[name].append(1e3 * (time.perf_counter() - start))
  return {name: statistics.median(values) for name, values in times.items()}


def _wait(result):
  """Fetches a tensor (waiting for it); NumPy results are there already."""
  return result.numpy() if hasattr(result, 'numpy') else result


def _build(shape, seed):
  """The three bijectors for `shape`, with weights perturbed from the init."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  from cinc_tfp import bijectors  # pylint: disable=g-import-not-at-top
  from cinc_tfp.bijectors import init  # pylint: disable=g-import-not-at-top
  channels = shape[-1]

  def perturbed(parameters, salt):
    return {name: value if name in init.FIXED else value + 0.05 *
            tf.random.stateless_normal(value.shape, (seed, 100 * salt + m),
                                       dtype=value.dtype)
            for m, (name, value) in enumerate(parameters.items())}

  conv1x1 = perturbed(init.conv1x1(channels, seed=(seed, 3)), 2)
  return {
      'cinc': bijectors.CIncConv2D(**perturbed(
          init.cinc_conv(channels, seed=(seed, 1)), 0)),
      'emerging': bijectors.EmergingConv2D(**perturbed(
          init.emerging_conv(channels, seed=(seed, 2)), 1)),
      'conv1x1': bijectors.Conv1x1(**conv1x1),
      # The same map as TFP's LU-parametrized matvec, per pixel.
      'scale_matvec_lu': tfp.bijectors.ScaleMatvecLU(
          tf.linalg.set_diag(conv1x1['lower_upper'],
                             conv1x1['sign'] * tf.exp(conv1x1['log_scale'])),
          conv1x1['permutation']),
  }


def layer_candidates(shape, batch_size, jit, with_raster=True, seed=0):
  """(`{name: (fn, input)}`, `x`): each candidate of `_CANDIDATES` as a traced
  function of `[batch_size, *shape]` images that returns the sum of its
  output, with its input: the random images `x` for a forward, the layer's
  output on `x` for an inverse (which should then sum to `x`'s sum)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cinc_tfp import bijectors  # pylint: disable=g-import-not-at-top
  from train import pixel_loop  # pylint: disable=g-import-not-at-top
  layers = _build(shape, seed)
  spec = tf.TensorSpec([batch_size, *shape], tf.float32)
  x = tf.random.stateless_normal(spec.shape, [seed, 1])
  candidates = {}
  cinc = layers['cinc']
  for name, key, direction in _CANDIDATES:
    if direction == 'inverse_reference' and not with_raster:
      continue
    if direction == 'pixel_loop':
      if pixel_loop.available():
        kernel = cinc.effective_kernel().numpy()
        bias = cinc.bias.numpy().astype(np.float64)
        candidates[name] = (
            lambda y, kernel=kernel, bias=bias: np.sum(pixel_loop.solve(  # pylint: disable=g-long-lambda
                y - bias, kernel, cinc.corner)),
            cinc.forward(x).numpy().astype(np.float64))
      continue
    if direction == 'planned_inverse':
      planned = bijectors.CIncConv2D(
          cinc.kernel, cinc.log_diag, cinc.bias, corner=cinc.corner,
          inverse_plan=cinc.plan_inverse(shape[1]))
      method = planned.inverse
    else:
      method = getattr(layers[key], direction)
    # A fresh symbolic input per trace, so the bijector cache never hits; the
    # reduction makes `.numpy()` wait for (and fetch) the whole result.
    function = tf.function(
        lambda t, method=method: tf.reduce_sum(method(t)),
        input_signature=[spec], jit_compile=jit or None)
    inputs = layers[key].forward(x) if direction != 'forward' else x
    candidates[name] = (function, inputs)
  return candidates, x


def time_layers(shape, batch_size, repeats, raster_repeats, jit, seed=0):
  """Median ms per call of each candidate on `[batch_size, *shape]` images."""
  candidates, _ = layer_candidates(shape, batch_size, jit,
                                   with_raster=raster_repeats > 0, seed=seed)
  calls = {name: functools.partial(function, inputs)
           for name, (function, inputs) in candidates.items()}
  raster = {name for name, _, direction in _CANDIDATES
            if direction == 'inverse_reference'}
  counts = {name: raster_repeats if name in raster else repeats
            for name in calls}
  return _median_ms(calls, counts)


def _processors():
  """'CPUs N | threads T' for the report headers (T: TensorFlow's thread
  pools, 'default' unless `--threads` set them)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpus = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
          else os.cpu_count())
  threads = tf.config.threading.get_intra_op_parallelism_threads()
  return f'CPUs {cpus} | threads {threads or "default"}'


def use_threads(threads):
  """Limits TensorFlow to `threads` threads per op and for running ops side
  by side (0: leave its defaults). Must run before TensorFlow runs any op."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _markdown(rows):
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) + ' |'
           for row in rows]
  lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
  return '\n'.join(lines)


def run_layers(batch_sizes=(1, 10, 100, 256), repeats=20,
               shapes=((32, 32, 3),), raster_repeats=3, jit=False):
  """Runs the `layers` benchmark and returns its report: for each batch
  size, a table of timings and one of ratios."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  header = (f'TF {tf.__version__} | batch sizes '
            f'{",".join(map(str, batch_sizes))} | {_processors()} | '
            f'jit {jit} | median of {repeats} (raster {raster_repeats})')
  names = [name for name, _, _ in _CANDIDATES]
  blocks = [header]
  for batch_size in batch_sizes:
    timing_rows = [['shape'] + [f'{name} ms' for name in names]]
    ratio_rows = [['shape'] + [ratio[0] for ratio in _RATIOS]]
    for shape in shapes:
      ms = time_layers(shape, batch_size, repeats, raster_repeats, jit)
      label = 'x'.join(map(str, shape))
      timing_rows.append(
          [label] + [f'{ms[n]:.2f}' if n in ms else '-' for n in names])
      cells = [label]
      for _, numerator, denominator, meets, only_shape in _RATIOS:
        if numerator not in ms or denominator not in ms:
          cells.append('-')
          continue
        ratio = ms[numerator] / ms[denominator]
        verdict = ('' if meets is None or
                   only_shape not in (None, tuple(shape))
                   else ' meets' if meets(ratio) else ' MISSES')
        cells.append(f'{ratio:.2f}x{verdict}')
      ratio_rows.append(cells)
    blocks += [f'batch {batch_size}', _markdown(timing_rows),
               _markdown(ratio_rows)]
  return '\n\n'.join(blocks)


# Rows of the `models` table: (name, conv, coupling, width) of a `CIncFlow`,
# or no conv for TFP's own `tfb.Glow`. Width `None` is the `--width` flag;
# 'matched' picks the width that brings the parameter count closest to the
# 'Glow' row's (TFP's Glow likewise, through its networks' hidden width).
_MODELS = (
    ('CInC+quad', 'cinc', 'quad', None),
    ('CInC+quad (Glow params)', 'cinc', 'quad', 'matched'),
    ('CInC+affine', 'cinc', 'affine', None),
    ('Emerging+affine', 'emerging', 'affine', None),
    ('Glow', '1x1', 'affine', None),
    ('TFP Glow', None, None, 'matched'),
)
# (ratio, numerator row, denominator row, timing, target comparison, bound);
# no bound: reported without a target.
_MODEL_RATIOS = (
    ('CInC+quad / Glow sampling', 'CInC+quad', 'Glow', 'sample', '<=', 1.2),
    ('CInC+quad (Glow params) / Glow sampling', 'CInC+quad (Glow params)',
     'Glow', 'sample', '<=', 1.2),
    ('CInC+affine / Glow sampling', 'CInC+affine', 'Glow', 'sample', '<=', 1.2),
    ('Emerging+affine / CInC+affine sampling', 'Emerging+affine',
     'CInC+affine', 'sample', None, None),
    ('CInC+quad / Glow train step', 'CInC+quad', 'Glow', 'train', '<=', 1.1),
    ('CInC+quad (Glow params) / Glow train step', 'CInC+quad (Glow params)',
     'Glow', 'train', '<=', 1.1),
    ('CInC+affine / Glow train step', 'CInC+affine', 'Glow', 'train', '<=',
     1.1),
)
PAPER_SIZE = (3, 32, 512)  # The paper's levels, depth and width.


def _count(variables):
  return sum(math.prod(variable.shape) for variable in variables)


def _cinc_flow(image_shape, levels, depth, width, conv, coupling, x,
               num_samples):
  """(parameters, sampling fn of a seed, train-step fn of images).

  Sampling runs on weights that stay fixed, as in serving and interactive
  use (so the CInC inverses use their `InversePlan`s); the train step runs
  on a second instance with the same initial weights, whose updates never
  reach the sampled one.
  """
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cinc_tfp import flow  # pylint: disable=g-import-not-at-top
  sampled, trained = (
      flow.CIncFlow(image_shape, levels=levels, depth=depth, width=width,
                    conv=conv, coupling=coupling) for _ in range(2))
  sampled.initialize(x)
  trained.initialize(x)
  trained.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=False)
  trained.optimizer.build(trained.trainable_variables)
  sample = tf.function(
      lambda seed: tf.reduce_sum(sampled.sample(num_samples, seed=seed)))
  step = tf.function(lambda x: trained.train_step(x)['bits_per_dim'])
  return _count(trained.trainable_variables), sample, step


def _closest_width(a, b, c, target):
  """The positive int `w` whose count `a w^2 + b w + c` is closest to
  `target`."""
  root = (-b + math.sqrt(max(b * b - 4 * a * (c - target), 0.))) / (2 * a)
  return min({max(1, math.floor(root)), max(1, math.floor(root) + 1)},
             key=lambda w: abs(a * w * w + b * w + c - target))


def _matched_flow_width(image_shape, levels, depth, conv, coupling, target):
  """The `CIncFlow` width whose parameter count is closest to `target`.

  The count is a quadratic in the width (each network has one width x width
  convolution, the rest is linear in it or fixed), so three counts fix it.
  """
  from cinc_tfp import flow  # pylint: disable=g-import-not-at-top
  count = lambda width: _count(flow.CIncFlow(
      image_shape, levels=levels, depth=depth, width=width, conv=conv,
      coupling=coupling).trainable_variables)
  p1, p2, p3 = count(1), count(2), count(3)
  a = (p3 - 2 * p2 + p1) / 2
  b = p2 - p1 - 3 * a
  return _closest_width(a, b, p1 - a - b, target)


def _tfp_glow(image_shape, levels, steps, hidden, input_channels=None):
  """`tfb.Glow`; appends its coupling networks' input channels to the list."""
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top

  def coupling(shape):
    if input_channels is not None:
      input_channels.append(shape[-1])
    return tfp.bijectors.GlowDefaultNetwork(shape, num_hidden=hidden)

  return tfp.bijectors.Glow(
      image_shape, levels, steps, coupling_bijector_fn=coupling,
      exit_bijector_fn=tfp.bijectors.GlowDefaultExitNetwork)


def _matched_tfp_glow(image_shape, levels, depth, width, target):
  """(`tfb.Glow` with `depth` steps per block, its hidden width): the width
  that brings its parameter count closest to `target`.

  A `GlowDefaultNetwork` from c channels with h hidden ones (3x3, 1x1, 3x3
  convolutions to 2c) has h^2 + (27c + 2) h + 2c parameters; the rest of the
  Glow does not depend on h.
  """
  channels = []
  glow = _tfp_glow(image_shape, levels, depth, width, channels)
  a, b = len(channels), sum(27 * c + 2 for c in channels)
  c = _count(glow.trainable_variables) - a * width * width - b * width
  hidden = _closest_width(a, b, c, target)
  if hidden != width:
    glow = _tfp_glow(image_shape, levels, depth, hidden)
  return glow, hidden


def _tfp_glow_functions(glow, x, num_samples, n_bits=8):
  """(parameters, sampling fn, train-step fn) of a `tfb.Glow`, as above."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  tfd = tfp.distributions
  num_dims = math.prod(x.shape[1:])
  distribution = tfd.TransformedDistribution(
      tfd.Sample(tfd.Normal(0., 1.), [num_dims]), glow)
  distribution.log_prob(x)  # Data-dependent initialization of the ActNorms.
  variables = glow.trainable_variables
  optimizer = keras.optimizers.Adam(1e-4)
  optimizer.build(variables)

  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      log_prob = tf.reduce_mean(distribution.log_prob(x))
      bits = n_bits - log_prob / (num_dims * math.log(2.))
    optimizer.apply_gradients(zip(tape.gradient(bits, variables), variables))
    return bits

  sample = tf.function(lambda seed: tf.reduce_sum(
      distribution.sample(num_samples, seed=seed)))
  return _count(variables), sample, step


def time_models(image_shape, levels, depth, width, num_samples, batch_size,
                repeats, models=None, seed=0):
  """{row: (parameters, width, sampling ms, train-step ms)}: medians of
  `repeats` interleaved calls after a warm-up (width: the coupling networks'
  hidden width, `num_hidden` for TFP's Glow), for the rows named in `models`
  (default: all)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = tf.random.stateless_uniform([batch_size, *image_shape], [seed, 1],
                                  minval=-0.5, maxval=0.5)
  sample_seed = tf.constant([seed, 2])
  parameters, calls, widths = {}, {}, {}
  # Rows matched to Glow's parameter count are built after the others.
  rows = [row for row in _MODELS if models is None or row[0] in models]
  for name, conv, coupling, row_width in sorted(
      rows, key=lambda row: row[3] == 'matched'):
    if conv is None:
      glow, widths[name] = _matched_tfp_glow(image_shape, levels, depth,
                                             width, parameters['Glow'])
      parameters[name], sample, step = _tfp_glow_functions(glow, x,
                                                           num_samples)
    else:
      widths[name] = width if row_width is None else _matched_flow_width(
          image_shape, levels, depth, conv, coupling, parameters['Glow'])
      parameters[name], sample, step = _cinc_flow(
          image_shape, levels, depth, widths[name], conv, coupling, x,
          num_samples)
    calls[name, 'sample'] = functools.partial(sample, sample_seed)
    calls[name, 'train'] = functools.partial(step, x)
  ms = _median_ms(calls, dict.fromkeys(calls, repeats))
  return {name: (parameters[name], widths[name], ms[name, 'sample'],
                 ms[name, 'train']) for name, _, _, _ in rows}


# Times a SavedModel's `sample` and `decode` in a fresh process that imports
# TensorFlow only, on the CPU; prints {count: {call: ms}} and the modules of
# this package or TFP that loading it brought in, as JSON.
_SERVED_TIMING = """
import json, statistics, sys, time
import tensorflow as tf
path, counts, repeats = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
served = tf.saved_model.load(path)
dims = int(tf.reduce_prod(served.image_shape))
result = {}
for n in counts:
  z = tf.random.stateless_normal([n, dims], [0, 3])
  calls = {
      'sample': lambda: served.sample(tf.constant(n), tf.constant(1.0),
                                      tf.constant([0, 2]))['images'].numpy(),
      'decode': lambda: served.decode(z)['images'].numpy(),
  }
  times = {name: [] for name in calls}
  for call in calls.values():
    call()
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      call()
      times[name].append(1e3 * (time.perf_counter() - start))
  result[n] = {name: statistics.median(t) for name, t in times.items()}
modules = sorted({m.split('.')[0] for m in sys.modules} &
                 {'cinc_tfp', 'tensorflow_probability'})
print(json.dumps({'ms': result, 'modules': modules}))
"""


def time_served(image_shape, levels, depth, width, conv, coupling, counts,
                repeats, seed=0):
  """(`{count: {call: (in-memory ms, SavedModel ms)}}`, modules): `sample`
  and `decode` of a `CIncFlow` in this process (traced with the batch size
  fixed) and of its SavedModel, loaded in a fresh process that imports only
  TensorFlow and sees no GPU (the modules of this package or TFP it loaded
  are returned: none is expected)."""
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cinc_tfp import export  # pylint: disable=g-import-not-at-top
  from cinc_tfp import flow  # pylint: disable=g-import-not-at-top
  model = flow.CIncFlow(image_shape, levels=levels, depth=depth, width=width,
                        conv=conv, coupling=coupling)
  model.initialize(tf.random.stateless_uniform(
      [16, *image_shape], [seed, 1], minval=-0.5, maxval=0.5))
  in_memory = {}
  for count in counts:
    z = tf.random.stateless_normal([count, model.num_dims], [seed, 3])
    sample = tf.function(lambda count=count: model.sample(count, seed=[0, 2]))
    decode = tf.function(model.decode)
    in_memory[count] = _median_ms(
        {'sample': sample, 'decode': functools.partial(decode, z)},
        {'sample': repeats, 'decode': repeats})
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, 'saved_model')
    export.save(model, path)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
    child = subprocess.run(
        [sys.executable, '-c', _SERVED_TIMING, path, json.dumps(list(counts)),
         str(repeats)], env=env, capture_output=True, text=True, check=True)
  served = json.loads(child.stdout.strip().splitlines()[-1])
  return ({count: {call: (in_memory[count][call],
                          served['ms'][str(count)][call])
                   for call in ('sample', 'decode')} for count in counts},
          served['modules'])


def run_served(image_shape=(32, 32, 3), levels=3, depth=8, width=128,
               counts=(1, 16, 100), repeats=9, models=('CInC+affine',)):
  """The SavedModel table: for each row of `_MODELS` named in `models` (a
  `CIncFlow`) and each batch size, `sample` and `decode` in memory and from
  the SavedModel in a fresh TensorFlow-only process, with their ratio."""
  rows = [['model', 'batch', 'sample ms', 'served sample ms', 'ratio',
           'decode ms', 'served decode ms', 'ratio']]
  notes = []
  for name, conv, coupling, row_width in _MODELS:
    if name not in models:
      continue
    if conv is None or row_width is not None:
      raise ValueError(f'{name!r} is not a CIncFlow at the given width.')
    ms, modules = time_served(image_shape, levels, depth, width, conv,
                              coupling, counts, repeats)
    if modules:
      notes.append(f'{name}: loading the SavedModel imported {modules}.')
    for count, calls in ms.items():
      cells = [name, str(count)]
      for memory, served in calls.values():
        cells += [f'{memory:.1f}', f'{served:.1f}', f'{served / memory:.2f}x']
      rows.append(cells)
  header = ('SavedModel (fresh process, TensorFlow only, CPU) against the '
            f'model in memory | L{levels} D{depth} w{width} | median of '
            f'{repeats}; the two processes are timed one after the other')
  return '\n\n'.join([header, _markdown(rows)] + notes)


def check_models(models):
  """A ValueError unless `models` names rows of the table, with 'Glow' when
  a row is matched to its parameter count."""
  names = [row[0] for row in _MODELS]
  if not models:
    raise ValueError(f'--models: name at least one of the rows {names}.')
  unknown = [name for name in models if name not in names]
  if unknown:
    raise ValueError(f'--models: unknown {unknown}; the rows are {names}.')
  matched = [row[0] for row in _MODELS if row[3] == 'matched']
  if 'Glow' not in models and set(matched) & set(models):
    raise ValueError(f'--models: {matched} are sized after Glow, so they '
                     f'need Glow too; got {list(models)}.')


def run_models(image_shape=(32, 32, 3), levels=3, depth=8, width=128,
               num_samples=(1, 16, 100), batch_size=64, repeats=9,
               paper_size=False, models=None):
  """Runs the `models` benchmark and returns its report: two tables and
  notes for each number of samples in `num_samples` (an int or a sequence),
  on the rows named in `models` (default: all)."""
  counts = [num_samples] if isinstance(num_samples, int) else num_samples
  return '\n\n'.join(
      _run_models(image_shape, levels, depth, width, count, batch_size,
                  repeats, paper_size, models) for count in counts)


def _run_models(image_shape, levels, depth, width, num_samples, batch_size,
                repeats, paper_size, models):
  """`run_models` for one number of samples."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if models is not None:
    check_models(models)
  configs = [(levels, depth, width)]
  if paper_size and PAPER_SIZE not in configs:
    configs.append(PAPER_SIZE)
  header = (f'TF {tf.__version__} | image {"x".join(map(str, image_shape))} | '
            f'{num_samples} samples | train batch {batch_size} | '
            f'{_processors()} | median of {repeats}')
  timing_rows = [['config', 'model', 'width', 'params',
                  f'sample {num_samples} ms', f'train step {batch_size} ms']]
  labels, results, notes = [], [], []
  for config in configs:
    label = 'L{} D{} w{}'.format(*config)
    result = time_models(image_shape, *config, num_samples, batch_size,
                         repeats, models)
    labels.append(label)
    results.append(result)
    for name, (count, row_width, sample_ms, train_ms) in result.items():
      timing_rows.append([label, name, str(row_width), f'{count:,}',
                          f'{sample_ms:.1f}', f'{train_ms:.1f}'])
    for name, _, _, row_width in _MODELS:
      if row_width == 'matched' and name in result:
        count, ours = result[name][0], result['Glow'][0]
        notes.append(f'{name} at {label}: width {result[name][1]}, {count:,} '
                     f'parameters vs {ours:,} for Glow '
                     f'({count / ours - 1:+.2%}).')
    if 'TFP Glow' in result:
      notes.append(
          f'TFP Glow is tfb.Glow(num_glow_blocks={config[0]}, '
          f'num_steps_per_block={config[1]}) with GlowDefaultNetwork('
          f'num_hidden={result["TFP Glow"][1]}).')
  ratio_rows = [['ratio', 'target'] + labels]
  for title, numerator, denominator, timing, comparison, bound in _MODEL_RATIOS:
    cells = [title, 'none' if bound is None else f'{comparison} {bound}x']
    column = 2 if timing == 'sample' else 3
    for result in results:
      if numerator not in result or denominator not in result:
        cells.append('-')
        continue
      ratio = result[numerator][column] / result[denominator][column]
      if bound is None:
        cells.append(f'{ratio:.2f}x')
        continue
      meets = ratio <= bound if comparison == '<=' else ratio >= bound
      cells.append(f'{ratio:.2f}x {"meets" if meets else "MISSES"}')
    ratio_rows.append(cells)
  return '\n\n'.join([header, _markdown(timing_rows), _markdown(ratio_rows),
                      '\n'.join(notes)])


def _layers_from_flags():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel('ERROR')  # Seven tf.functions are no "retracing".
  return run_layers([int(size) for size in FLAGS.batch_sizes],
                    FLAGS.repeats or 20,
                    parse_shapes(FLAGS.shapes), FLAGS.raster_repeats, FLAGS.jit)


def _models_from_flags():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel('ERROR')
  image_shape = parse_shapes(FLAGS.image_shape, '--image_shape')[0]
  counts = [int(n) for n in FLAGS.num_samples]
  report = run_models(image_shape, FLAGS.levels, FLAGS.depth, FLAGS.width,
                      counts, FLAGS.batch_size_train, FLAGS.repeats or 9,
                      FLAGS.paper_size, FLAGS.models)
  if not FLAGS.served_models:
    return report
  return '\n\n'.join([report, run_served(
      image_shape, FLAGS.levels, FLAGS.depth, FLAGS.width, counts,
      FLAGS.repeats or 9, FLAGS.served_models)])


# Benchmark name -> function of no arguments (reading FLAGS) returning a report.
BENCHMARKS = {'layers': _layers_from_flags, 'models': _models_from_flags}


def _define_flags():
  """Defines the flags; only when run as a program, so importing is harmless."""
  flags.DEFINE_list('batch_sizes', ['1', '10', '100', '256'],
                    'Images per call (layers): one table per batch size.')
  flags.DEFINE_integer(
      'repeats', None, 'Timed calls per candidate (median); default 20 for '
      'layers, 9 for models.', lower_bound=1)
  flags.DEFINE_string('shapes', '32x32x3,16x16x12,8x8x48',
                      'Comma-separated image shapes HxWxC (layers).')
  flags.DEFINE_integer(
      'raster_repeats', 3,
      'Timed calls of the slow raster references (0: skip them).',
      lower_bound=0)
  flags.DEFINE_bool('jit', False, 'Compile with XLA (jit_compile=True).')
  flags.DEFINE_integer(
      'threads', 0, 'TensorFlow threads per op and ops run side by side; 0: '
      'its defaults (every core), 1: one core, as the papers timed on a CPU.',
      lower_bound=0)
  flags.DEFINE_string('image_shape', '32x32x3', 'Image shape HxWxC (models).')
  flags.DEFINE_integer('levels', 3, 'Levels L (models).', lower_bound=1)
  flags.DEFINE_integer('depth', 8, 'Steps per level D (models).',
                       lower_bound=1)
  flags.DEFINE_integer('width', 128, 'Hidden channels of the coupling '
                       'networks (models).', lower_bound=1)
  flags.DEFINE_list('num_samples', ['1', '16', '100'],
                    'Images per sampling call (models): a report for each.')
  flags.DEFINE_integer('batch_size_train', 64,
                       'Images per training step (models).', lower_bound=1)
  flags.DEFINE_list(
      'models', None, 'Rows to time (models), comma-separated names as in the '
      f'table: {", ".join(row[0] for row in _MODELS)}; default all.')
  flags.DEFINE_list(
      'served_models', ['CInC+affine'],
      'CIncFlow rows (at --width) whose SavedModel is timed against the '
      'model in memory (models); empty: none.')
  flags.DEFINE_bool('paper_size', False, 'Also time the paper\'s L=3, D=32, '
                    'width 512 models (models; slow).')

  def check_shapes(text):
    try:
      parse_shapes(text)
    except ValueError as error:
      raise flags.ValidationError(str(error)) from None
    return True

  def check_image_shape(values):
    try:
      shapes = parse_shapes(values['image_shape'], '--image_shape')
    except ValueError as error:
      raise flags.ValidationError(str(error)) from None
    levels = max(values['levels'], PAPER_SIZE[0] if values['paper_size'] else 1)
    if len(shapes) != 1 or any(size % 2**levels for size in shapes[0][:2]):
      raise flags.ValidationError(
          f'--image_shape: expected one HxWxC with H and W divisible by '
          f'2**levels = {2**levels}, got {values["image_shape"]!r}.')
    return True

  def check_model_names(models):
    try:
      if models is not None:
        check_models(models)
    except ValueError as error:
      raise flags.ValidationError(str(error)) from None
    return True

  def check_batch_sizes(sizes, flag='--batch_sizes'):
    if not sizes or not all(size.isdigit() and int(size) > 0 for size in sizes):
      raise flags.ValidationError(
          f'{flag}: expected comma-separated positive ints, got '
          f'{",".join(sizes)!r}.')
    return True

  def check_served_models(models):
    servable = [name for name, conv, _, row_width in _MODELS
                if conv is not None and row_width is None]
    unknown = [name for name in models if name not in servable]
    if unknown:
      raise flags.ValidationError(
          f'--served_models: unknown {unknown}; CIncFlow rows at --width are '
          f'{servable}.')
    return True

  flags.register_validator('shapes', check_shapes)
  flags.register_validator('served_models', check_served_models)
  flags.register_validator('batch_sizes', check_batch_sizes)
  flags.register_validator(
      'num_samples', lambda sizes: check_batch_sizes(sizes, '--num_samples'))
  flags.register_validator('models', check_model_names)
  flags.register_multi_flags_validator(
      ['image_shape', 'levels', 'paper_size'], check_image_shape)


def main(argv):
  if len(argv) != 2 or argv[1] not in BENCHMARKS:
    got = ' '.join(argv[1:]) or 'nothing'
    sys.exit(f'train.benchmark: expected one benchmark name out of '
             f'{sorted(BENCHMARKS)}, got {got!r}.')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TF's import.
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # TF's INFO lines (export).
  use_threads(FLAGS.threads)
  print(BENCHMARKS[argv[1]](), flush=True)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
