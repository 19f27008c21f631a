"""The `models` benchmark: whole flows, sampled and trained side by side.

It times `CIncFlow`s (CInC+quad, CInC+affine, Emerging+affine and Glow =
1x1+affine, at one width; CInC+quad again with the width that matches the
Glow row's parameter count) and TFP's own `tfb.Glow` (the same number of
steps, its coupling networks' hidden width matched the same way; trained
through `TransformedDistribution.log_prob`, which runs each of its networks
twice, once for the inverse and once for the log-determinant): drawing each
number of samples (a report each) from fixed weights, and one Adam step on
the log-likelihood of a batch of random images (on another instance of the
model), each a `tf.function` traced once and warmed up, timed interleaved
(`harness.round_times_ms`); a ratio is the median of the rounds' ratios,
with their quartiles (`harness.paired_ratio`). `run_served` times a
model's SavedModel in a fresh process that imports only TensorFlow against
the model in memory. The targets the ratios are held to are in the README.
"""

import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp import export
from cinc_tfp import flow

from . import harness

# Rows of the `models` table: (name, conv, coupling, width) of a `CIncFlow`,
# or no conv for TFP's own `tfb.Glow`. Width `None` is the `--width` flag;
# 'matched' picks the width that brings the parameter count closest to the
# 'Glow' row's (TFP's Glow likewise, through its networks' hidden width).
MODELS = (
    ('CInC+quad', 'cinc', 'quad', None),
    ('CInC+quad (Glow params)', 'cinc', 'quad', 'matched'),
    ('CInC+affine', 'cinc', 'affine', None),
    ('Emerging+affine', 'emerging', 'affine', None),
    ('Glow', '1x1', 'affine', None),
    ('TFP Glow', None, None, 'matched'),
)
# (ratio, numerator row, denominator row, timing: 'sample' or 'train').
_RATIOS = (
    ('CInC+quad / Glow sampling', 'CInC+quad', 'Glow', 'sample'),
    ('CInC+quad (Glow params) / Glow sampling', 'CInC+quad (Glow params)',
     'Glow', 'sample'),
    ('CInC+affine / Glow sampling', 'CInC+affine', 'Glow', 'sample'),
    ('Emerging+affine / CInC+affine sampling', 'Emerging+affine',
     'CInC+affine', 'sample'),
    ('CInC+quad / Glow train step', 'CInC+quad', 'Glow', 'train'),
    ('CInC+quad (Glow params) / Glow train step', 'CInC+quad (Glow params)',
     'Glow', 'train'),
    ('CInC+affine / Glow train step', 'CInC+affine', 'Glow', 'train'),
)
PAPER_SIZE = (3, 32, 512)  # The paper's levels, depth and width.


def count_parameters(variables):
  return sum(math.prod(variable.shape) for variable in variables)


def _cinc_flow(image_shape, levels, depth, width, conv, coupling, x,
               num_samples):
  """(parameters, sampling fn of a seed, train-step fn of images).

  Sampling runs on weights that stay fixed, as in serving and interactive
  use (so the CInC inverses use their `InversePlan`s); the train step runs
  on a second instance with the same initial weights, whose updates never
  reach the sampled one.
  """
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
  return count_parameters(trained.trainable_variables), sample, step


def _closest_width(a, b, c, target):
  """The positive int `w` whose count `a w^2 + b w + c` is closest to
  `target`."""
  root = (-b + math.sqrt(max(b * b - 4 * a * (c - target), 0.))) / (2 * a)
  return min({max(1, math.floor(root)), max(1, math.floor(root) + 1)},
             key=lambda w: abs(a * w * w + b * w + c - target))


def matched_flow_width(image_shape, levels, depth, conv, coupling, target):
  """The `CIncFlow` width whose parameter count is closest to `target`.

  The count is a quadratic in the width (each network has one width x width
  convolution, the rest is linear in it or fixed), so three counts fix it.
  """
  count = lambda width: count_parameters(flow.CIncFlow(
      image_shape, levels=levels, depth=depth, width=width, conv=conv,
      coupling=coupling).trainable_variables)
  p1, p2, p3 = count(1), count(2), count(3)
  a = (p3 - 2 * p2 + p1) / 2
  b = p2 - p1 - 3 * a
  return _closest_width(a, b, p1 - a - b, target)


def tfp_glow(image_shape, levels, steps, hidden, input_channels=None):
  """`tfb.Glow`; appends its coupling networks' input channels to the list."""

  def coupling(shape):
    if input_channels is not None:
      input_channels.append(shape[-1])
    return tfp.bijectors.GlowDefaultNetwork(shape, num_hidden=hidden)

  return tfp.bijectors.Glow(
      image_shape, levels, steps, coupling_bijector_fn=coupling,
      exit_bijector_fn=tfp.bijectors.GlowDefaultExitNetwork)


def matched_tfp_glow(image_shape, levels, depth, width, target):
  """(`tfb.Glow` with `depth` steps per block, its hidden width): the width
  that brings its parameter count closest to `target`.

  A `GlowDefaultNetwork` from c channels with h hidden ones (3x3, 1x1, 3x3
  convolutions to 2c) has h^2 + (27c + 2) h + 2c parameters; the rest of the
  Glow does not depend on h.
  """
  channels = []
  glow = tfp_glow(image_shape, levels, depth, width, channels)
  a, b = len(channels), sum(27 * c + 2 for c in channels)
  c = (count_parameters(glow.trainable_variables) - a * width * width -
       b * width)
  hidden = _closest_width(a, b, c, target)
  if hidden != width:
    glow = tfp_glow(image_shape, levels, depth, hidden)
  return glow, hidden


class TFPGlowFlow(keras.Model):
  """TFP's `tfb.Glow` as a Keras model that `fit` trains like a `CIncFlow`:
  each step minimizes the batch's mean bits/dim under the
  `TransformedDistribution` of a standard normal through the Glow (its
  ActNorms initialize from the first batch they see)."""

  def __init__(self, glow, image_shape, n_bits=8):
    super().__init__()
    self.glow = glow
    self.image_shape = tuple(image_shape)
    self.n_bits = n_bits
    self.num_classes = None  # Scored by `run.evaluate` like a `TrainedFlow`.
    self.num_dims = math.prod(self.image_shape)
    self.distribution = tfp.distributions.TransformedDistribution(
        tfp.distributions.Sample(tfp.distributions.Normal(0., 1.),
                                 [self.num_dims]), glow)
    self.bits_per_dim_tracker = keras.metrics.Mean('bits_per_dim')

  @property
  def metrics(self):
    return [self.bits_per_dim_tracker]

  def bits_per_dim(self, x):
    """Bits per dimension of the discrete images that `x` dequantizes."""
    return flow.bits_per_dim(self.distribution.log_prob(x), self.num_dims,
                             self.n_bits)

  def train_step(self, x):
    variables = self.glow.trainable_variables
    with tf.GradientTape() as tape:
      bits = tf.reduce_mean(self.bits_per_dim(x))
    self.optimizer.apply_gradients(zip(tape.gradient(bits, variables),
                                       variables))
    self.bits_per_dim_tracker.update_state(bits)
    return {'bits_per_dim': self.bits_per_dim_tracker.result()}



def _tfp_glow_functions(glow, x, num_samples, n_bits=8):
  """(parameters, sampling fn, train-step fn) of a `tfb.Glow`, as above."""
  model = TFPGlowFlow(glow, x.shape[1:], n_bits)
  model.bits_per_dim(x)  # Data-dependent initialization of the ActNorms.
  model.compile(optimizer=keras.optimizers.Adam(1e-4))
  model.optimizer.build(glow.trainable_variables)
  sample = tf.function(lambda seed: tf.reduce_sum(
      model.distribution.sample(num_samples, seed=seed)))
  step = tf.function(lambda x: model.train_step(x)['bits_per_dim'])
  return count_parameters(glow.trainable_variables), sample, step


def time_models(image_shape, levels, depth, width, num_samples, batch_size,
                repeats, models=None, seed=0):
  """{row: (parameters, width, sampling ms, train-step ms)}: the ms of each
  of `repeats` rounds of interleaved calls (lists), after a warm-up (width:
  the coupling networks' hidden width, `num_hidden` for TFP's Glow), for the
  rows named in `models` (default: all)."""
  x = tf.random.stateless_uniform([batch_size, *image_shape], [seed, 1],
                                  minval=-0.5, maxval=0.5)
  sample_seed = tf.constant([seed, 2])
  parameters, calls, widths = {}, {}, {}
  # Rows matched to Glow's parameter count are built after the others.
  rows = [row for row in MODELS if models is None or row[0] in models]
  for name, conv, coupling, row_width in sorted(
      rows, key=lambda row: row[3] == 'matched'):
    if conv is None:
      glow, widths[name] = matched_tfp_glow(image_shape, levels, depth,
                                             width, parameters['Glow'])
      parameters[name], sample, step = _tfp_glow_functions(glow, x,
                                                           num_samples)
    else:
      widths[name] = width if row_width is None else matched_flow_width(
          image_shape, levels, depth, conv, coupling, parameters['Glow'])
      parameters[name], sample, step = _cinc_flow(
          image_shape, levels, depth, widths[name], conv, coupling, x,
          num_samples)
    calls[name, 'sample'] = functools.partial(sample, sample_seed)
    calls[name, 'train'] = functools.partial(step, x)
  ms = harness.round_times_ms(calls, dict.fromkeys(calls, repeats))
  return {name: (parameters[name], widths[name], ms[name, 'sample'],
                 ms[name, 'train']) for name, _, _, _ in rows}


# Serves timings of a SavedModel's `sample` and `decode` from a fresh process
# that imports TensorFlow only, on the CPU: for each request line
# `[count, call]` on stdin, a line with the time in ms of one call (JSON),
# its inputs made, and a warm-up call run, at the first request for them. At
# the end of its input, the modules of this package or TFP that loading it
# brought in.
_SERVED_TIMING = """
import json, sys, time
import tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
dims = int(tf.reduce_prod(served.image_shape))
calls = {}
print('[]', flush=True)
for line in sys.stdin:
  key = tuple(json.loads(line))
  if key not in calls:
    count, name = key
    if name == 'sample':
      inputs = (tf.constant(count), tf.constant(1.0), tf.constant([0, 2]))
      call = lambda inputs=inputs: served.sample(*inputs)['images'].numpy()
    else:
      z = tf.random.stateless_normal([count, dims], [0, 3])
      call = lambda z=z: served.decode(z)['images'].numpy()
    call()
    calls[key] = call
  start = time.perf_counter()
  calls[key]()
  print(json.dumps(1e3 * (time.perf_counter() - start)), flush=True)
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} &
                        {'cinc_tfp', 'tensorflow_probability'})), flush=True)
"""


def _on_cpu(function):
  """`function`, its ops placed on the CPU whatever devices there are."""

  def on_cpu(*args):
    with tf.device('/CPU:0'):
      return function(*args)

  return on_cpu


def time_served(image_shape, levels, depth, width, conv, coupling, counts,
                repeats, rounds=7, seed=0):
  """(`{count: {call: {'memory': ms, 'served': ms}}}`, modules):
  `sample` and `decode` of a `CIncFlow` in this process on its CPU (traced
  with the batch size fixed) and of its SavedModel, loaded in a fresh
  process that imports only TensorFlow and sees no GPU (the modules of this
  package or TFP it loaded are returned: none is expected).

  The two processes alternate single calls, `repeats` pairs in each of
  `rounds` rounds, the first of a pair taking turns, so that a change of
  the machine's speed hits both calls of a pair alike: the ms of each
  call, the i-th of the two a pair (`harness.paired_ratio`). (Turns of many
  calls each, compared by their medians, could not resolve a few percent
  here: docs/performance.md.)
  """
  with tf.device('/CPU:0'):  # Its weights too, on a machine with a GPU.
    model = flow.CIncFlow(image_shape, levels=levels, depth=depth,
                          width=width, conv=conv, coupling=coupling)
    model.initialize(tf.random.stateless_uniform(
        [16, *image_shape], [seed, 1], minval=-0.5, maxval=0.5))
  in_memory = {}
  for count in counts:
    z = tf.random.stateless_normal([count, model.num_dims], [seed, 3])
    sample = tf.function(_on_cpu(functools.partial(model.sample, count,
                                                   seed=[0, 2])))
    decode = tf.function(_on_cpu(model.decode))
    in_memory[count] = {'sample': sample,
                        'decode': functools.partial(decode, z)}
  times = {count: {call: {'memory': [], 'served': []}
                    for call in ('sample', 'decode')} for count in counts}
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, 'saved_model')
    export.save(model, path)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
    with open(os.path.join(directory, 'stderr'), 'w+') as errors, \
        subprocess.Popen([sys.executable, '-c', _SERVED_TIMING, path],
                         env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=errors,
                         text=True) as child:

      def reply():
        line = child.stdout.readline()
        if not line:
          errors.seek(0)
          raise RuntimeError('The SavedModel timing process failed:\n' +
                             errors.read()[-3000:])
        return json.loads(line)

      reply()  # Loaded.

      def served_ms(count, call):
        child.stdin.write(json.dumps([count, call]) + '\n')
        child.stdin.flush()
        return reply()

      for count in counts:
        for call in ('sample', 'decode'):
          harness.time_ms(in_memory[count][call])  # Warm-up: trace.
      for round_ in range(rounds):
        for count in counts:
          for call in ('sample', 'decode'):
            for pair in range(repeats):
              if (round_ + pair) % 2:
                memory = harness.time_ms(in_memory[count][call])
                loaded = served_ms(count, call)
              else:
                loaded = served_ms(count, call)
                memory = harness.time_ms(in_memory[count][call])
              times[count][call]['memory'].append(memory)
              times[count][call]['served'].append(loaded)
      child.stdin.close()
      modules = reply()
  return times, modules


def run_served(image_shape=(32, 32, 3), levels=3, depth=8, width=128,
               counts=(1, 16, 100), repeats=9, models=('CInC+affine',),
               rounds=7):
  """The SavedModel table: for each row of `MODELS` named in `models` (a
  `CIncFlow`) and each batch size, `sample` and `decode` in memory and from
  the SavedModel in a fresh TensorFlow-only process, with their ratio (see
  `time_served`)."""
  rows = [['model', 'batch', 'sample ms', 'served sample ms', 'ratio',
           'decode ms', 'served decode ms', 'ratio']]
  notes = []
  for name, conv, coupling, row_width in MODELS:
    if name not in models:
      continue
    if conv is None or row_width is not None:
      raise ValueError(f'{name!r} is not a CIncFlow at the given width.')
    ms, modules = time_served(image_shape, levels, depth, width, conv,
                              coupling, counts, repeats, rounds)
    if modules:
      notes.append(f'{name}: loading the SavedModel imported {modules}.')
    for count, calls in ms.items():
      cells = [name, str(count)]
      for times in calls.values():
        cells += [f'{statistics.median(times["memory"]):.1f}',
                  f'{statistics.median(times["served"]):.1f}',
                  harness.paired_ratio(times, 'served', 'memory')]
      rows.append(cells)
  header = ('SavedModel (fresh process, TensorFlow only, CPU) against the '
            f'model in memory | L{levels} D{depth} w{width} | the two '
            f'processes alternate single calls, {repeats * rounds} pairs; '
            'medians of all calls; ratio: the median of the pairs\' '
            '(their quartiles)')
  return '\n\n'.join([header, harness.markdown(rows)] + notes)


def check_models(models, rows=MODELS):
  """A ValueError unless `models` names rows of the table `rows`, with
  'Glow' when a row is matched to its parameter count."""
  names = list(dict.fromkeys(row[0] for row in rows))  # Tables share rows.
  if not models:
    raise ValueError(f'--models: name at least one of the rows {names}.')
  unknown = [name for name in models if name not in names]
  if unknown:
    raise ValueError(f'--models: unknown {unknown}; the rows are {names}.')
  matched = list(dict.fromkeys(row[0] for row in rows if row[3] == 'matched'))
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
  if models is not None:
    check_models(models)
  configs = [(levels, depth, width)]
  if paper_size and PAPER_SIZE not in configs:
    configs.append(PAPER_SIZE)
  header = (f'TF {tf.__version__} | image {"x".join(map(str, image_shape))} | '
            f'{num_samples} samples | train batch {batch_size} | '
            f'{harness.processors()} | medians of {repeats} rounds; ratios: '
            'the median of the rounds\' (their quartiles)')
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
                          f'{statistics.median(sample_ms):.1f}',
                          f'{statistics.median(train_ms):.1f}'])
    for name, _, _, row_width in MODELS:
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
  ratio_rows = [['ratio'] + labels]
  for title, numerator, denominator, timing in _RATIOS:
    column = 2 if timing == 'sample' else 3
    ratio_rows.append([title] + [harness.paired_ratio(
        {name: timings[column] for name, timings in result.items()},
        numerator, denominator) for result in results])
  return '\n\n'.join([header, harness.markdown(timing_rows), harness.markdown(ratio_rows),
                      '\n'.join(notes)])
