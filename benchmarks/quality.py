"""The `quality` benchmark: test bits/dim of every conv x coupling, over seeds.

Every row is a flow trained on the same data with the same recipe and
budget, once per seed, and scored on the held-out split. The `CIncFlow`
rows (CInC, Emerging and Glow's 1x1 convolutions, each with quad and affine
couplings; CInC and Emerging again without `reverse_channels`; the quad flows
again at the width whose parameter count matches the 'Glow' row's) are whole runs of `cinc_tfp.trainer.train`, as the train
command makes them: `fit` with the optimizer of `cinc_tfp.training`, the
averaged weights swapped in, then `cinc_tfp.run.evaluate`. TFP's own
`tfb.Glow`, sized to the same parameter count (`models.matched_tfp_glow`),
is the outside reference: a Keras model fitted on the same stream of batches
(`run.training_stream`, a function of the seed alone) with the same
optimizer, and scored by the same `run.evaluate`.

A seed sets the initial weights and the order of the batches; the rows of
one seed see the same batches, so differences between rows can be compared
seed by seed. The report gives, per row, the parameters, the test bits/dim
as mean and standard deviation over the seeds, and the wall time of a run
(training and evaluation); then, against 'Glow', the per-seed differences.
"""

import contextlib
import io
import math
import statistics
import tempfile
import time

import keras
import tensorflow as tf

from cinc_tfp import config as config_lib
from cinc_tfp import data
from cinc_tfp import flow
from cinc_tfp import run as run_lib
from cinc_tfp import trainer
from cinc_tfp import training

from . import harness
from . import models as models_lib

__all__ = ['MODEL', 'ROWS', 'check_rows', 'run_quality', 'train_row']

# Rows: (name, conv, coupling, width, reverse_channels) of a `CIncFlow`, or
# no conv for TFP's `tfb.Glow`. Width `None` is the `width` argument;
# 'matched' the width that brings the parameter count closest to the 'Glow'
# row's. `reverse_channels` `None` is `FlowConfig`'s default (on for CInC
# and Emerging, off for 1x1); the "no reversal" rows are the papers' steps.
ROWS = (
    ('CInC+quad', 'cinc', 'quad', None, None),
    ('CInC+affine', 'cinc', 'affine', None, None),
    ('Emerging+quad', 'emerging', 'quad', None, None),
    ('Emerging+affine', 'emerging', 'affine', None, None),
    ('1x1+quad', '1x1', 'quad', None, None),
    ('Glow', '1x1', 'affine', None, None),
    ('CInC+quad (no reversal)', 'cinc', 'quad', None, False),
    ('CInC+affine (no reversal)', 'cinc', 'affine', None, False),
    ('Emerging+quad (no reversal)', 'emerging', 'quad', None, False),
    ('Emerging+affine (no reversal)', 'emerging', 'affine', None, False),
    ('CInC+quad (Glow params)', 'cinc', 'quad', 'matched', None),
    ('Emerging+quad (Glow params)', 'emerging', 'quad', 'matched', None),
    ('1x1+quad (Glow params)', '1x1', 'quad', 'matched', None),
    ('TFP Glow', None, None, 'matched', None),
)
# The default model and budget: every row, 3 seeds, in about 50 minutes on
# two cores (also the command's defaults).
MODEL = dict(levels=2, depth=4, width=32, batch_size=32)


def _train_tfp_glow(options, hidden):
  """Trains and scores `tfb.Glow` with `hidden` hidden channels on
  `options`' data, batches and recipe; returns its test bits/dim."""
  train_images, test_images, config = trainer.data_and_config(options)
  shape = run_lib.image_shape(config)
  keras.utils.set_random_seed(config['seed'])  # The networks' initializers.
  glow = models_lib.tfp_glow(shape, config['levels'], config['depth'], hidden)
  model = models_lib.TFPGlowFlow(glow, shape, config['n_bits'])
  stream = run_lib.training_stream(train_images, config)
  model.bits_per_dim(next(iter(stream)))  # Builds the networks and ActNorms.
  optimizer = run_lib.build_optimizer(config, glow.trainable_variables)
  model.compile(optimizer=optimizer)
  model.fit(stream, epochs=1, steps_per_epoch=options['steps'], verbose=0,
            shuffle=False)  # The stream is shuffled.
  # Keras tracks no variable of a `tf.Module` such as `tfb.Glow`.
  optimizer.swap_in_averages(glow.trainable_variables)
  return run_lib.evaluate(model, test_images)['bits_per_dim']


def train_row(row, options):
  """Trains one row of `ROWS` (a tuple) with `options` (the train command's
  options, with 'width' set to the row's width) in a temporary run
  directory; returns `(test bits/dim, seconds)`."""
  name, conv, coupling, _, reverse_channels = row
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as directory, contextlib.redirect_stdout(
      io.StringIO()):  # The runs' progress bars and start lines.
    if conv is None:
      bits = _train_tfp_glow(options, options['width'])
    else:
      bits = trainer.train(dict(
          options, conv=conv, coupling=coupling,
          reverse_channels=reverse_channels, model_dir=directory,
          steps_per_epoch=options['steps'],
          checkpoint_every=options['steps']))['test_bits_per_dim']
  if not math.isfinite(bits):
    raise run_lib.RunError(f'{name}: test bits/dim is {bits}.')
  return bits, time.perf_counter() - start


def check_rows(rows):
  """A ValueError unless `rows` names rows of `ROWS`, with 'Glow' when a row
  is matched to its parameter count."""
  models_lib.check_models(rows, ROWS)


def _widths_and_parameters(names, image_shape, levels, depth, width):
  """{row name: (width, parameters)}: the rows sized after 'Glow''s count."""
  sizes = {}
  for name, conv, coupling, row_width, _ in sorted(
      (row for row in ROWS if row[0] in names),
      key=lambda row: row[3] == 'matched'):
    if conv is None:
      glow, hidden = models_lib.matched_tfp_glow(
          image_shape, levels, depth, width, sizes['Glow'][1])
      sizes[name] = hidden, models_lib.count_parameters(
          glow.trainable_variables)
      continue
    if row_width == 'matched':
      row_width = models_lib.matched_flow_width(
          image_shape, levels, depth, conv, coupling, sizes['Glow'][1])
    row_width = row_width or width
    sizes[name] = row_width, models_lib.count_parameters(flow.CIncFlow(
        image_shape, levels=levels, depth=depth, width=row_width, conv=conv,
        coupling=coupling).trainable_variables)
  return sizes


def _spread(values):
  """The sample standard deviation, 0 for one value."""
  return statistics.stdev(values) if len(values) > 1 else 0.


def run_quality(dataset=data.EMBEDDED, image_size=None,
                levels=MODEL['levels'], depth=MODEL['depth'],
                width=MODEL['width'], batch_size=MODEL['batch_size'],
                steps=1000, seeds=(0, 1, 2), rows=None, data_dir=None,
                download=True, recipe=None, progress=None):
  """Runs the `quality` benchmark and returns its report.

  Args:
    dataset, image_size, data_dir, download: the data, as the train
      command's flags.
    levels, depth, width: the flows' L, D and the networks' hidden width.
    batch_size, steps: the training budget of every run.
    seeds: the seeds (initial weights and batch order); a run per row each.
    rows: names of `ROWS` to train (default: all).
    recipe: the optimizer options (default `training.RECIPE`, the train
      command's).
    progress: if given, called with a line per run as it ends.
  """
  names = [row[0] for row in ROWS] if rows is None else list(rows)
  check_rows(names)
  recipe = dict(training.RECIPE, **(recipe or {}))
  size = image_size or data.default_image_size(dataset)
  channels = int(data.load_images(dataset, 'train', size, data_dir,
                                  download).element_spec.shape[-1])
  image_shape = (size, size, channels)
  sizes = _widths_and_parameters(names, image_shape, levels, depth, width)
  options = dict(
      {option.name: option.default
       for option in config_lib.FlowConfig.options()},
      **recipe, dataset=dataset, image_size=size,
      channels=channels,
      data_dir=data_dir, download=download, levels=levels, depth=depth,
      batch_size=batch_size, steps=steps, strategy='default', eval_split=None,
      temperatures=['1.0'], export=False, conditional=False)
  bits, seconds = {}, {}
  for seed in seeds:
    for row in ROWS:
      name = row[0]
      if name not in names:
        continue
      bits[name, seed], seconds[name, seed] = train_row(
          row, dict(options, seed=seed, width=sizes[name][0]))
      if progress:
        progress(f'{name} seed {seed}: test bits/dim '
                 f'{bits[name, seed]:.4f}, {seconds[name, seed]:.0f} s')
  recipe_text = ', '.join(f'{key} {value}' for key, value in recipe.items())
  header = (f'TF {tf.__version__} | {dataset}, image '
            f'{"x".join(map(str, image_shape))} | L={levels}, D={depth}, '
            f'width {width} | {steps} steps of batch {batch_size} | '
            f'{recipe_text} | seeds {",".join(map(str, seeds))} | '
            f'{harness.processors()}')
  table = [['model', 'width', 'params', 'test bits/dim (mean)', 'std',
            'per seed', 'run s']]
  for name in names:
    values = [bits[name, seed] for seed in seeds]
    table.append([
        name, str(sizes[name][0]), f'{sizes[name][1]:,}',
        f'{statistics.mean(values):.4f}', f'{_spread(values):.4f}',
        ' '.join(f'{value:.4f}' for value in values),
        f'{statistics.mean(seconds[name, seed] for seed in seeds):.0f}'])
  reports = [header, harness.markdown(table)]
  if 'Glow' in names and len(names) > 1:
    reports.append(harness.markdown(_against_glow(names, bits, seeds)))
  return '\n\n'.join(reports)


def _against_glow(names, bits, seeds):
  """Rows of the differences from 'Glow', seed by seed (same batches)."""
  table = [['model', 'minus Glow (mean)', 'std', 'per seed',
            'beyond both spreads']]
  glow = [bits['Glow', seed] for seed in seeds]
  for name in names:
    if name == 'Glow':
      continue
    values = [bits[name, seed] for seed in seeds]
    differences = [a - b for a, b in zip(values, glow)]
    mean = statistics.mean(differences)
    beyond = len(seeds) > 1 and abs(mean) > max(_spread(values),
                                                _spread(glow))
    table.append([name, f'{mean:+.4f}', f'{_spread(differences):.4f}',
                  ' '.join(f'{d:+.4f}' for d in differences),
                  'yes' if beyond else 'no'])
  return table
