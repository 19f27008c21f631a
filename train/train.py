"""Trains a CInC flow with Keras `fit`, then evaluates, samples and exports it.

  python -m train.train [--model_dir=DIR] [--dataset=NAME] [--steps=N] ...

With no flags: the embedded MNIST digits at 16x16 (no network needed), a
2-level flow, 3 to 4 minutes on two CPU cores; the last line printed is
`test bits/dim: X` on the held-out split (2.66 in the README's run). Every
option: `--helpfull`.

In `--model_dir` (see `cinc_tfp/run.py` for config.json and the checkpoints):

- `tensorboard/`: bits/dim per epoch (Keras' TensorBoard callback, in
  `train/`) and a grid of samples, one row per temperature of
  `--temperatures` (in `samples/`), at the end of every epoch.
- `ckpt-STEP.*`: a checkpoint every `--checkpoint_every` optimizer steps
  after the step it started or resumed from
  (`tf.train.CheckpointManager(checkpoint_interval=...)`), and at the end.
- at the end: `samples.png` (one row per temperature of `--temperatures`),
  `saved_model/` (`cinc_tfp.export`), and the test bits/dim, printed, all
  with the averaged (EMA) weights when `--ema` > 0.

Resuming: the same command again continues from the newest checkpoint, so a
run killed at any moment loses at most `--checkpoint_every` steps. `--steps`
is the total number of optimizer steps, so a larger value continues a
finished run. The data stream (the training images repeated, shuffled in
fixed blocks by `data.shuffle_blocks`, batched and dequantized) is a function
of `--seed` alone: a resumed run skips the batches the checkpoint has
consumed and sees exactly the batches an uninterrupted run would have, so it
ends with the same weights.
An epoch is `--steps_per_epoch` steps; after a resume mid-epoch the rest of
that epoch runs as a shorter `fit` call.

Defaults: sized for the no-flag run (16x16 digits, 3 to 4 minutes on two
CPU cores; 2.66 bits/dim on the test split in the README's run): batch 32,
Adamax at 3e-3 after 200 warm-up steps, an EMA of momentum 0.99, 3,000
steps. The paper's settings for long runs on 32x32 images are `--batch_size=64
--learning_rate=1e-3 --ema=0.999 --levels=3 --depth=32 --width=512`.

Divergence: a non-finite bits/dim, or non-finite weights when a checkpoint
is due, stops training at once with an error; no checkpoint is written after
it, so the last good one stays.

Distribution (`--strategy`): 'default' (one device); 'mirrored' (all GPUs,
or the CPU split into two logical devices when there is no GPU);
'multi_worker' (`tf.distribute.MultiWorkerMirroredStrategy`, one process per
worker, the cluster in `TF_CONFIG`; every worker runs the same command with
the same `--model_dir` and restores from it, only the chief writes there, the
others write to a temporary directory that they delete). `--batch_size` is
global. On a TPU, `tf.distribute.TPUStrategy` would take the place of these in
`make_strategy` (see the README).
"""

import os

# Quieter TensorFlow C++ logging unless asked otherwise; before TF loads.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import tempfile

from absl import flags

from cinc_tfp import run as run_lib
from cinc_tfp import trainer
from cinc_tfp import training
from . import cli_flags
from . import common

FLAGS = flags.FLAGS

# Defaults sized to run in a few minutes on two CPU cores (README: 3-4).
# (The other model options keep cinc_tfp.config.FlowConfig's defaults.)
MODEL_DEFAULTS = dict(levels=2, depth=4, width=64, batch_size=32)


def define_flags(flag_values=FLAGS):
  """Defines the command's flags in `flag_values`."""
  fv = flag_values
  cli_flags.define_data_flags(fv)
  cli_flags.define_model_flags(fv, MODEL_DEFAULTS)
  flags.DEFINE_bool(
      'conditional', False, "A class-conditional flow of the dataset's "
      'classes, trained on its labels (the embedded digits, TFDS datasets '
      'with labels, folders with a subfolder per class).', flag_values=fv)
  flags.DEFINE_string(
      'model_dir', os.path.join(tempfile.gettempdir(), 'cinc_tfp_run'),
      'Directory of the run: config, checkpoints, logs, samples, export.',
      flag_values=fv)
  flags.DEFINE_integer('steps', 3000, 'Total optimizer steps.', lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer('steps_per_epoch', 200,
                       'Steps per epoch: the unit of logging and samples.',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('checkpoint_every', 200,
                       'Steps between checkpoints.', lower_bound=1,
                       flag_values=fv)
  recipe = training.RECIPE
  flags.DEFINE_enum('optimizer', recipe['optimizer'], training.OPTIMIZERS,
                    'Adamax (the paper) or Adam.', flag_values=fv)
  flags.DEFINE_float('learning_rate', recipe['learning_rate'],
                     'Learning rate after warm-up.',
                     lower_bound=0., flag_values=fv)
  flags.DEFINE_integer('warmup_steps', recipe['warmup_steps'],
                       'Steps of linear learning-rate warm-up.', lower_bound=0,
                       flag_values=fv)
  flags.DEFINE_float('ema', recipe['ema'],
                     'Momentum of the Polyak (EMA) average of the weights '
                     'used for evaluation, samples and export; 0 disables it. '
                     "Keras' average starts at the first step's weights, "
                     "without bias correction: the paper's 0.999 suits runs "
                     'of many thousand steps.',
                     lower_bound=0., upper_bound=1., flag_values=fv)
  flags.DEFINE_enum('strategy', 'default', trainer.STRATEGIES,
                    'tf.distribute strategy (multi_worker reads TF_CONFIG).',
                    flag_values=fv)
  flags.DEFINE_string('eval_split', None,
                      "Held-out split; default 'test' ('validation' for the "
                      'ImageNet variants).', flag_values=fv)
  flags.DEFINE_list('temperatures', ['0.5', '0.7', '0.9', '1.0'],
                    'Sampling temperatures, one row of the sample grids each.',
                    flag_values=fv)
  flags.DEFINE_bool('export', True, 'Export the SavedModel at the end '
                    '(--noexport: the checkpoints only).', flag_values=fv)
  cli_flags.require_finite(fv, 'learning_rate')
  flags.register_validator(
      'ema', lambda ema: ema < 1., '--ema must be below 1', flag_values=fv)
  flags.register_validator(
      'temperatures', _temperatures_ok,
      '--temperatures must be a non-empty list of positive numbers',
      flag_values=fv)


def _temperatures_ok(values):
  try:
    return bool(values) and all(
        0 < float(t) < float('inf') for t in values)
  except ValueError:
    return False


def run(flag_values=FLAGS):
  """Trains, evaluates, samples and exports as the flags say
  (`cinc_tfp.trainer.train`), and prints where and how well.

  Returns:
    what `trainer.train` returns.
  """
  options = flag_values.flag_values_dict()
  strategy = trainer.make_strategy(options['strategy'])
  if strategy.extended.should_checkpoint:
    run_lib.check_writable(options['model_dir'], '--model_dir', directory=True)
  result = trainer.train(options, strategy)
  directory = result['model_dir']
  exported = (f'; SavedModel: {directory}/saved_model' if options['export']
              else '')
  print(f"Step {result['step']}; samples: {directory}/samples.png{exported}")
  if 'test_accuracy' in result:
    print(f"test accuracy: {result['test_accuracy']:.4f}", flush=True)
  print(f"test bits/dim: {result['test_bits_per_dim']:.4f}", flush=True)
  return result


def main():
  """The console script's entry point (`cinc-train`)."""
  define_flags()
  common.run_main(run)


if __name__ == '__main__':
  main()
