"""Trains a CInC flow with Keras `fit`, then evaluates, samples and exports it.

  python -m train.train [--model_dir=DIR] [--dataset=NAME] [--steps=N] ...

With no flags: the embedded MNIST digits at 16x16 (no network needed), a
2-level flow, about 5-7 minutes on two CPU cores; the last line printed is
`test bits/dim: X` on the held-out split. Every option: `--helpfull`.

In `--model_dir` (see `cinc_tfp/run.py` for config.json and the checkpoints):

- `tensorboard/`: bits/dim per epoch (Keras' TensorBoard callback, in
  `train/`) and a grid of samples, one row per temperature of
  `--temperatures` (in `samples/`), at the end of every epoch.
- `ckpt-STEP.*`: a checkpoint every `--checkpoint_every` optimizer steps and
  at the end.
- at the end: `samples.png` (one row per temperature of `--temperatures`),
  `saved_model/` (`cinc_tfp.export`), and the test bits/dim, printed, all
  with the averaged (EMA) weights when `--ema` > 0.

Resuming: the same command again continues from the newest checkpoint, so a
run killed at any moment loses at most `--checkpoint_every` steps. `--steps`
is the total number of optimizer steps, so a larger value continues a
finished run. The data stream (the training images repeated, then shuffled
through a buffer, batched and dequantized) is a function of `--seed` alone: a
resumed run skips the batches the checkpoint has consumed and sees exactly the
batches an uninterrupted run would have, so it ends with the same weights.
An epoch is `--steps_per_epoch` steps; after a resume mid-epoch the rest of
that epoch runs as a shorter `fit` call.

Defaults: sized for the no-flag run (16x16 digits, under 10 minutes on two
CPU cores; measured about 3 bits/dim on the test split): batch 32, Adamax at
3e-3 after 200 warm-up steps, an EMA of momentum 0.99, 3,000 steps. The
paper's settings for long runs on 32x32 images are `--batch_size=64
--learning_rate=1e-3 --ema=0.999 --levels=3 --depth=32 --width=512`.

Divergence: a non-finite bits/dim (or non-finite weights at a checkpoint)
stops training at once with an error; no checkpoint is written after it, so
the last good one stays.

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
import math
import shutil
import tempfile

from absl import flags
import keras
import numpy as np
import tensorflow as tf

from cinc_tfp import data
from cinc_tfp import export
from cinc_tfp import run as run_lib
from cinc_tfp import training
from train import common

FLAGS = flags.FLAGS

STRATEGIES = ('default', 'mirrored', 'multi_worker')
# Defaults sized to run in under 10 minutes on two CPU cores.
# (The other model options keep cinc_tfp.config.FlowConfig's defaults.)
MODEL_DEFAULTS = dict(levels=2, depth=4, width=64, batch_size=32)
SAMPLES_PER_ROW = 8


def define_flags(flag_values=FLAGS):
  """Defines the command's flags in `flag_values`."""
  fv = flag_values
  common.define_data_flags(fv)
  common.define_model_flags(fv, MODEL_DEFAULTS)
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
  flags.DEFINE_enum('optimizer', 'adamax', training.OPTIMIZERS,
                    'Adamax (the paper) or Adam.', flag_values=fv)
  flags.DEFINE_float('learning_rate', 3e-3, 'Learning rate after warm-up.',
                     lower_bound=0., flag_values=fv)
  flags.DEFINE_integer('warmup_steps', 200,
                       'Steps of linear learning-rate warm-up.', lower_bound=0,
                       flag_values=fv)
  flags.DEFINE_float('ema', 0.99,
                     'Momentum of the Polyak (EMA) average of the weights '
                     'used for evaluation, samples and export; 0 disables it. '
                     "Keras' average starts at the first step's weights, "
                     "without bias correction: the paper's 0.999 suits runs "
                     'of many thousand steps.',
                     lower_bound=0., upper_bound=1., flag_values=fv)
  flags.DEFINE_enum('strategy', 'default', STRATEGIES,
                    'tf.distribute strategy (multi_worker reads TF_CONFIG).',
                    flag_values=fv)
  flags.DEFINE_string('eval_split', None,
                      "Held-out split; default 'test' ('validation' for the "
                      'ImageNet variants).', flag_values=fv)
  flags.DEFINE_list('temperatures', ['0.5', '0.7', '0.9', '1.0'],
                    'Sampling temperatures, one row of the sample grids each.',
                    flag_values=fv)
  common.require_finite(fv, 'learning_rate')
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


# Distribution.


def make_strategy(name):
  """The `tf.distribute` strategy named by `--strategy`; call it first."""
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  if tf.config.list_physical_devices('GPU'):
    return tf.distribute.MirroredStrategy()
  # No GPU: two replicas on two logical CPUs.
  cpu = tf.config.list_physical_devices('CPU')[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  except RuntimeError as error:
    raise common.TrainError(
        '--strategy=mirrored splits the CPU in two, which must happen before '
        f'TensorFlow starts running ops: {common.first_line(error)}') from error
  return tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])


# Training loop pieces.


def fit_segments(start, steps, steps_per_epoch):
  """The `fit` calls that take training from step `start` to `steps`.

  Epoch `e` is steps `[e * steps_per_epoch, (e + 1) * steps_per_epoch)`; a
  partial epoch (after a mid-epoch resume, or the last one) is a `fit` call of
  its own, and whole epochs in a row share one.

  Returns:
    A list of `(first_step, initial_epoch, epochs, steps_per_epoch)`, the
    arguments of each `fit` call (`epochs` being fit's end epoch).
  """
  segments = []
  step = start
  while step < steps:
    epoch = step // steps_per_epoch
    whole = (steps - step) // steps_per_epoch
    if step % steps_per_epoch == 0 and whole:
      segments.append((step, epoch, epoch + whole, steps_per_epoch))
      step += whole * steps_per_epoch
    else:
      end = min((epoch + 1) * steps_per_epoch, steps)
      segments.append((step, epoch, epoch + 1, end - step))
      step = end
  return segments


class Guard(keras.callbacks.Callback):
  """Stops training at a non-finite bits/dim; saves checkpoints otherwise.

  A checkpoint is written every `every` steps and at step `last`, and only if
  the batch's bits/dim and every weight are finite, so the newest checkpoint
  is always a good one.
  """

  def __init__(self, manager, every, last):
    super().__init__()
    self.manager = manager
    self.every = every
    self.last = last
    self.diverged = None

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    bits = float(np.mean(np.asarray(logs['bits_per_dim'])))
    if not math.isfinite(bits):
      self._stop(step, f'bits/dim is {bits}')
    elif step % self.every == 0 or step == self.last:
      if not all(np.isfinite(v.numpy()).all()
                 for v in self.model.trainable_variables):
        self._stop(step, 'the weights are not finite')
      else:
        self.manager.save(checkpoint_number=step)

  def _stop(self, step, reason):
    last = self.manager.latest_checkpoint
    kept = (f'the last good checkpoint, {last}, is kept' if last else
            'no checkpoint was written')
    self.diverged = (
        f'Training diverged at step {step}: {reason}. Stopped; {kept}. Try a '
        f'lower --learning_rate or more --warmup_steps.')
    self.model.stop_training = True


class SampleImages(keras.callbacks.Callback):
  """Writes a grid of samples (one row per temperature) to TensorBoard at
  the end of every epoch."""

  def __init__(self, log_dir, sample_fn, temperatures, n_bits, guard):
    super().__init__()
    self.writer = tf.summary.create_file_writer(os.path.join(log_dir,
                                                             'samples'))
    self.sample_fn = sample_fn
    self.temperatures = temperatures
    self.n_bits = n_bits
    self.guard = guard

  def on_epoch_end(self, epoch, logs=None):
    if self.guard.diverged:
      return
    grid = run_lib.sample_grid(self.sample_fn, self.temperatures,
                              SAMPLES_PER_ROW, self.n_bits)
    with self.writer.as_default():
      tf.summary.image('samples', grid[None],
                       step=int(self.model.optimizer.iterations.numpy()))
    self.writer.flush()

  def on_train_end(self, logs=None):
    self.writer.close()


# The command.


def _data_and_config(options):
  """Train and held-out `uint8` datasets, and the run configuration."""
  size = options['image_size'] or data.default_image_size(options['dataset'])
  split = options['eval_split'] or common.default_eval_split(
      options['dataset'])
  train_images, test_images = (
      data.load_images(options['dataset'], name, size, options['data_dir'],
                       options['download'])
      for name in ('train', split))
  config = {key: options[key] for key in run_lib.RUN_KEYS if key in options}
  config.update(image_size=size,
                channels=int(train_images.element_spec.shape[-1]))
  return train_images, test_images, config


def _restore_or_start(config, strategy, run_dir, write_dir, chief):
  """The model (compiled with its optimizer), restored from the run's
  newest checkpoint if there is one, and the checkpoint manager that writes
  to `write_dir`."""
  path = run_dir.latest_checkpoint()
  if path:
    if run_dir.read_config() is None:
      raise common.TrainError(
          f'{run_dir.path} holds checkpoints but no {run_lib.CONFIG_FILE}.')
    run_dir.check_config(config)
  with strategy.scope():
    model = run_lib.build_model(config)
    optimizer = run_lib.build_optimizer(config, model.trainable_variables)
    model.compile(optimizer=optimizer)
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  if path:
    run_lib.restore(checkpoint, path)
    print(f'Resuming {run_dir.path} from {path}.', flush=True)
  else:
    print(f'Starting a new run in {run_dir.path}.', flush=True)
  if chief and not path:
    # No checkpoint yet (a new run, or one that stopped before its first):
    # this run's options are the run's.
    run_dir.write_config(config)
  return model, run_dir.checkpoint_manager(checkpoint, write_dir)


def _fit(model, manager, train_images, config, options, log_dir, sample_fn,
         temperatures):
  """Trains from the restored step to `--steps` (see the module docstring)."""
  guard = Guard(manager, options['checkpoint_every'], options['steps'])
  stream = run_lib.training_stream(train_images, config)
  start = int(model.optimizer.iterations.numpy())
  for first, initial_epoch, epochs, epoch_steps in fit_segments(
      start, options['steps'], options['steps_per_epoch']):
    model.fit(
        stream.skip(first), initial_epoch=initial_epoch, epochs=epochs,
        steps_per_epoch=epoch_steps, shuffle=False,  # The stream is shuffled.
        callbacks=[
            guard,
            keras.callbacks.TensorBoard(log_dir, write_graph=False,
                                        profile_batch=0),
            SampleImages(log_dir, sample_fn, temperatures, config['n_bits'],
                         guard),
        ])
    if guard.diverged:
      raise common.TrainError(guard.diverged)


def run(flag_values=FLAGS):
  """Trains, evaluates, samples and exports as the flags say.

  Returns:
    dict with 'test_bits_per_dim', 'step' (the optimizer steps done) and
    'model_dir'.
  """
  options = flag_values.flag_values_dict()
  strategy = make_strategy(options['strategy'])
  run_dir = run_lib.RunDirectory(options['model_dir'])
  chief = strategy.extended.should_checkpoint
  if chief:
    common.check_output_path(run_dir.path, 'model_dir', directory=True)
  # Non-chief workers write what the chief writes, where it is thrown away.
  write_dir = run_dir.path if chief else tempfile.mkdtemp(
      prefix='cinc-worker-')
  try:
    train_images, test_images, config = _data_and_config(options)
    model, manager = _restore_or_start(config, strategy, run_dir, write_dir,
                                       chief)
    sample_fn = tf.function(model.sample)
    temperatures = [float(t) for t in options['temperatures']]
    _fit(model, manager, train_images, config, options,
         os.path.join(write_dir, 'tensorboard'), sample_fn, temperatures)
    step = int(model.optimizer.iterations.numpy())

    # The run's checkpoints are final: the averaged weights replace the raw.
    training.use_averaged_weights(model, model.optimizer)
    bits = run_lib.mean_bits_per_dim(
        tf.function(model.bits_per_dim, input_signature=[tf.TensorSpec(
            [None, *model.image_shape], tf.float32)]),
        test_images, config['n_bits'])
    if chief:
      data.write_image(os.path.join(write_dir, 'samples.png'),
                     run_lib.sample_grid(sample_fn, temperatures,
                                         SAMPLES_PER_ROW, config['n_bits']))
    export.save(model, os.path.join(write_dir, 'saved_model'))
  finally:
    if not chief:
      shutil.rmtree(write_dir, ignore_errors=True)
  print(f'Step {step}; samples: {run_dir.join("samples.png")}; '
        f'SavedModel: {run_dir.join("saved_model")}')
  print(f'test bits/dim: {bits:.4f}', flush=True)
  return {'test_bits_per_dim': bits, 'step': step, 'model_dir': run_dir.path}


if __name__ == '__main__':
  define_flags()
  common.run_main(run)
