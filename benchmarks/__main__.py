"""The benchmarks' command line: `python -m benchmarks NAME [--flags]`.

  python -m benchmarks layers [--batch_sizes=1,10,100,256] [--repeats=20]
      [--shapes=32x32x3,16x16x12,8x8x48] [--raster_repeats=3] [--jit]
      [--threads=0]
  python -m benchmarks models [--image_shape=32x32x3] [--levels=3]
      [--depth=8] [--width=128] [--num_samples=1,16,100] [--batch_size_train=64]
      [--repeats=9] [--paper_size] [--models=CInC+affine,Glow]
      [--served_models=CInC+affine] [--threads=0]
  python -m benchmarks memory [--image_shape=32x32x3] [--levels=3]
      [--width=128] [--depths=4,8,16,32] [--couplings=affine,quad]
      [--batch_size_train=64] [--repeats=3]
  python -m benchmarks drift [--depths=4,8,16,32] [--levels=3] [--width=128]
      [--batch_size_train=64] [--train_steps=300]
  python -m benchmarks quality [--dataset=embedded] [--image_size]
      [--data_dir] [--levels=2] [--depth=4] [--width=32]
      [--batch_size_train=32] [--steps=1000] [--seeds=0,1,2] [--models=...]
      [--optimizer=adamax] [--learning_rate=3e-3] [--warmup_steps=200]
      [--ema=0.99]

Installed, the same is `cinc-benchmark NAME`. What each measures:
`benchmarks/layers.py`, `models.py`, `memory.py`, `drift.py` and
`quality.py`. `--levels`, `--depth`, `--width` and `--batch_size_train`
default to a smaller model for `quality` (`QUALITY_DEFAULTS`). `--threads=1` runs
TensorFlow on one thread, the one-core setting in which the papers timed
their CPU sampling; by default it uses every core.
"""

import os

# Quieter TensorFlow C++ logging unless asked otherwise; before TF loads.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from cinc_tfp import config
from cinc_tfp import data
from cinc_tfp import run as run_lib
from cinc_tfp import training

from . import harness
from . import drift as drift_lib
from . import layers as layers_lib
from . import memory as memory_lib
from . import models as models_lib
from . import quality as quality_lib

FLAGS = flags.FLAGS


def _layers_from_flags():
  return layers_lib.run_layers([int(size) for size in FLAGS.batch_sizes],
                           FLAGS.repeats or 20, harness.parse_shapes(
                               FLAGS.shapes), FLAGS.raster_repeats, FLAGS.jit)


def _models_from_flags():
  image_shape = harness.parse_shapes(FLAGS.image_shape, '--image_shape')[0]
  counts = [int(n) for n in FLAGS.num_samples]
  report = models_lib.run_models(
      image_shape, FLAGS.levels, FLAGS.depth, FLAGS.width, counts,
      FLAGS.batch_size_train, FLAGS.repeats or 9, FLAGS.paper_size,
      FLAGS.models)
  if not FLAGS.served_models:
    return report
  return '\n\n'.join([report, models_lib.run_served(
      image_shape, FLAGS.levels, FLAGS.depth, FLAGS.width, counts,
      FLAGS.repeats or 9, FLAGS.served_models)])


def _memory_from_flags():
  return memory_lib.run_memory(
      [int(depth) for depth in FLAGS.depths], FLAGS.couplings,
      harness.parse_shapes(FLAGS.image_shape, '--image_shape')[0],
      FLAGS.levels, FLAGS.width, FLAGS.batch_size_train, FLAGS.repeats or 3,
      progress=lambda row: print(row, flush=True))


def _drift_from_flags():
  return drift_lib.run_drift(
      [int(depth) for depth in FLAGS.depths], FLAGS.levels, FLAGS.width,
      FLAGS.batch_size_train, FLAGS.train_steps)


def _quality_from_flags():
  return quality_lib.run_quality(
      FLAGS.dataset, FLAGS.image_size, FLAGS.levels, FLAGS.depth, FLAGS.width,
      FLAGS.batch_size_train, FLAGS.steps, [int(s) for s in FLAGS.seeds],
      FLAGS.models, FLAGS.data_dir, FLAGS.download,
      dict(optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate,
           warmup_steps=FLAGS.warmup_steps, ema=FLAGS.ema),
      progress=lambda line: print(line, flush=True))


# Benchmark name -> function of no arguments (reading FLAGS) returning a report.
BENCHMARKS = {'layers': _layers_from_flags, 'models': _models_from_flags,
              'memory': _memory_from_flags, 'drift': _drift_from_flags,
              'quality': _quality_from_flags}
# The model flags' values for `quality` where not given (`quality.MODEL`).
QUALITY_DEFAULTS = dict(levels=quality_lib.MODEL['levels'],
                        depth=quality_lib.MODEL['depth'],
                        width=quality_lib.MODEL['width'],
                        batch_size_train=quality_lib.MODEL['batch_size'])
# Checks of --models, by benchmark.
_ROW_CHECKS = {'models': models_lib.check_models,
               'quality': quality_lib.check_rows}


def define_flags(fv=FLAGS):
  """Defines the flags in `fv`; only when run as a program, so that importing
  is harmless."""
  flags.DEFINE_list('batch_sizes', ['1', '10', '100', '256'],
                    'Images per call (layers): one table per batch size.', flag_values=fv)
  flags.DEFINE_integer(
      'repeats', None, 'Timed calls per candidate (median); default 20 for '
      'layers, 9 for models, 3 for memory.', lower_bound=1, flag_values=fv)
  flags.DEFINE_string('shapes', '32x32x3,16x16x12,8x8x48',
                      'Comma-separated image shapes HxWxC (layers).', flag_values=fv)
  flags.DEFINE_integer(
      'raster_repeats', 3,
      'Timed calls of the slow raster references (0: skip them).',
      lower_bound=0, flag_values=fv)
  flags.DEFINE_bool('jit', False, 'Compile with XLA (jit_compile=True).', flag_values=fv)
  flags.DEFINE_integer(
      'threads', 0, 'TensorFlow threads per op and ops run side by side; 0: '
      'its defaults (every core), 1: one core, as the papers timed on a CPU.',
      lower_bound=0, flag_values=fv)
  flags.DEFINE_string('image_shape', '32x32x3', 'Image shape HxWxC (models, memory).', flag_values=fv)
  flags.DEFINE_integer('levels', 3, 'Levels L (models, memory, drift, '
                       'quality).', lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('depth', 8, 'Steps per level D (models, quality).',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('width', 128, 'Hidden channels of the coupling '
                       'networks (models, memory, drift, quality).',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_list('num_samples', ['1', '16', '100'],
                    'Images per sampling call (models): a report for each.', flag_values=fv)
  flags.DEFINE_integer('batch_size_train', 64,
                       'Images per training step (models, memory, drift, '
                       'quality).',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_list('depths', ['4', '8', '16', '32'],
                    'Steps per level D (memory, drift): a row each.',
                    flag_values=fv)
  flags.DEFINE_integer('train_steps', 300, 'Training steps of each flow '
                       '(drift).', lower_bound=1, flag_values=fv)
  flags.DEFINE_list('couplings', ['affine', 'quad'],
                    'Couplings of the CInC flows (memory).', flag_values=fv)
  flags.DEFINE_list(
      'models', None, 'Rows to time (models) or to train (quality), '
      'comma-separated names as in the table; default all. models: '
      f'{", ".join(row[0] for row in models_lib.MODELS)}. quality: '
      f'{", ".join(row[0] for row in quality_lib.ROWS)}.', flag_values=fv)
  flags.DEFINE_list(
      'served_models', ['CInC+affine'],
      'CIncFlow rows (at --width) whose SavedModel is timed against the '
      'model in memory (models); empty: none.', flag_values=fv)
  flags.DEFINE_string('dataset', data.EMBEDDED, "Training and held-out data "
                      "(quality): 'embedded', a TFDS name or 'folder:PATH', "
                      'as in train.train.', flag_values=fv)
  flags.DEFINE_string('data_dir', None, 'TFDS data directory (quality).',
                      flag_values=fv)
  flags.DEFINE_bool('download', True, 'Let TFDS download and prepare the '
                    'dataset (quality).', flag_values=fv)
  flags.DEFINE_integer('image_size', None, "Side of the images (quality); "
                       "default the dataset's.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer('steps', 1000, 'Optimizer steps of every run '
                       '(quality).', lower_bound=1, flag_values=fv)
  flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds of the initial weights '
                    'and batch order (quality): a run of every row each.',
                    flag_values=fv)
  flags.DEFINE_enum('optimizer', training.RECIPE['optimizer'],
                    training.OPTIMIZERS, 'Optimizer (quality).',
                    flag_values=fv)
  flags.DEFINE_float('learning_rate', training.RECIPE['learning_rate'],
                     'Learning rate after warm-up (quality).', lower_bound=0,
                     flag_values=fv)
  flags.DEFINE_integer('warmup_steps', training.RECIPE['warmup_steps'],
                       'Steps of linear warm-up (quality).', lower_bound=0,
                       flag_values=fv)
  flags.DEFINE_float('ema', training.RECIPE['ema'], 'Momentum of the '
                     'averaged weights, in [0, 1) (quality).', lower_bound=0,
                     upper_bound=0.999999, flag_values=fv)
  flags.DEFINE_bool('paper_size', False, 'Also time the paper\'s L=3, D=32, '
                    'width 512 models (models; slow).', flag_values=fv)

  def check_shapes(text):
    try:
      harness.parse_shapes(text)
    except ValueError as error:
      raise flags.ValidationError(str(error)) from None
    return True

  def check_image_shape(values):
    try:
      shapes = harness.parse_shapes(values['image_shape'], '--image_shape')
    except ValueError as error:
      raise flags.ValidationError(str(error)) from None
    levels = max(values['levels'],
                 models_lib.PAPER_SIZE[0] if values['paper_size'] else 1)
    if len(shapes) != 1 or any(size % 2**levels for size in shapes[0][:2]):
      raise flags.ValidationError(
          f'--image_shape: expected one HxWxC with H and W divisible by '
          f'2**levels = {2**levels}, got {values["image_shape"]!r}.')
    return True

  def check_model_names(models):
    # Rows of either table; `_run` checks them against the benchmark's own.
    try:
      if models is not None:
        models_lib.check_models(models, models_lib.MODELS + quality_lib.ROWS)
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
    servable = [name for name, conv, _, row_width in models_lib.MODELS
                if conv is not None and row_width is None]
    unknown = [name for name in models if name not in servable]
    if unknown:
      raise flags.ValidationError(
          f'--served_models: unknown {unknown}; CIncFlow rows at --width are '
          f'{servable}.')
    return True

  flags.register_validator('shapes', check_shapes, flag_values=fv)
  flags.register_validator('served_models', check_served_models, flag_values=fv)
  flags.register_validator('batch_sizes', check_batch_sizes, flag_values=fv)
  flags.register_validator(
      'num_samples', lambda sizes: check_batch_sizes(sizes, '--num_samples'), flag_values=fv)
  flags.register_validator('models', check_model_names, flag_values=fv)
  flags.register_validator(
      'seeds', lambda seeds: bool(seeds) and all(
          seed.isdigit() for seed in seeds),
      '--seeds: expected comma-separated ints >= 0', flag_values=fv)
  flags.register_validator(
      'dataset', _known_dataset, '--dataset: unknown dataset', flag_values=fv)
  flags.register_validator(
      'depths', lambda sizes: check_batch_sizes(sizes, '--depths'),
      flag_values=fv)
  flags.register_validator(
      'couplings',
      lambda names: bool(names) and set(names) <= set(config.COUPLINGS),
      f'--couplings: expected names out of {config.COUPLINGS}', flag_values=fv)
  flags.register_multi_flags_validator(
      ['image_shape', 'levels', 'paper_size'], check_image_shape, flag_values=fv)


def _known_dataset(name):
  try:
    data.default_image_size(name)
  except data.DataError as error:
    raise flags.ValidationError(str(error)) from None
  return True


def _run(argv):
  if len(argv) != 2 or argv[1] not in BENCHMARKS:
    got = ' '.join(argv[1:]) or 'nothing'
    sys.exit(f'benchmarks: expected one benchmark name out of '
             f'{sorted(BENCHMARKS)}, got {got!r}.')
  if argv[1] == 'quality':
    for name, value in QUALITY_DEFAULTS.items():
      if not FLAGS[name].present:
        FLAGS[name].value = value
  if FLAGS.models is not None and argv[1] in _ROW_CHECKS:
    try:
      _ROW_CHECKS[argv[1]](FLAGS.models)
    except ValueError as error:
      sys.exit(f'benchmarks: {error}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # TF's INFO lines (export).
  harness.use_threads(FLAGS.threads)
  tf.get_logger().setLevel('ERROR')  # Its tf.functions are no "retracing".
  try:
    report = BENCHMARKS[argv[1]]()
  except (data.DataError, run_lib.RunError) as error:
    sys.exit(f'benchmarks: {error}')
  print(report, flush=True)


def main():
  """The console script's entry point (`cinc-benchmark`)."""
  define_flags()
  # --helpshort lists the flags of sys.argv[0], the script when installed,
  # after the docstring of __main__, the script's.
  script = sys.modules['__main__']
  if script.__doc__ is None:
    script.__doc__ = __doc__
  for flag in FLAGS.get_key_flags_for_module(sys.modules[__name__]):
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(_run)


if __name__ == '__main__':
  main()
