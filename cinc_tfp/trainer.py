"""A whole training run in a run directory, as `train.train` performs it.

`train(options)` starts a run or resumes it from its newest checkpoint,
trains with Keras `fit` to `options['steps']` optimizer steps, writing
checkpoints, TensorBoard logs and sample grids on the way, then swaps in the
averaged weights, evaluates the held-out split, writes `samples.png` and
exports the SavedModel unless `options['export']` is false (the layout is
`cinc_tfp.run`'s). Every value comes from `options`, a dict with the keys
of `run.RUN_KEYS` but those the data sets (`channels`, `num_classes`), and
those of the course of the run, which may change from one start to the
next: 'model_dir', 'steps', 'steps_per_epoch', 'checkpoint_every',
'strategy', 'eval_split', 'temperatures', 'data_dir', 'download' and
'export' (as `train.train`'s flags), and 'conditional': a
class-conditional flow of the dataset's classes (`num_classes` in the run's
configuration), trained on its labels.
"""

import math
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from cinc_tfp import data
from cinc_tfp import export
from cinc_tfp import run as run_lib
from cinc_tfp import training
from cinc_tfp import _errors

__all__ = ['STRATEGIES', 'SAMPLES_PER_ROW', 'Guard', 'data_and_config',
           'fit_segments', 'make_strategy', 'train']

STRATEGIES = ('default', 'mirrored', 'multi_worker')
SAMPLES_PER_ROW = 8


def make_strategy(name):
  """The `tf.distribute` strategy `name` of `STRATEGIES`; call it first.

  'mirrored' takes every GPU, or splits the CPU in two logical devices when
  there is none; 'multi_worker' reads the cluster from `TF_CONFIG`.
  """
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  if tf.config.list_physical_devices('GPU'):
    return tf.distribute.MirroredStrategy()
  cpu = tf.config.list_physical_devices('CPU')[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  except RuntimeError as error:
    raise run_lib.RunError(
        'the mirrored strategy splits the CPU in two, which must happen '
        'before TensorFlow starts running ops: '
        f'{_errors.first_line(error)}') from error
  return tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])


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
  """Stops training at a non-finite bits/dim; checkpoints otherwise.

  A checkpoint is due every `manager.checkpoint_interval` optimizer steps
  after step `start` (the step restored, or 0), and at step `last`. When
  one is due the weights are checked (only then: it costs a pass over every
  weight) and saved if finite, so the newest checkpoint always holds finite
  weights; training stops if they are not.
  """

  def __init__(self, manager, start, last):
    super().__init__()
    self.manager = manager
    self.last = last
    self.diverged = None
    self._saved_at = start
    self._all_finite = None

  def on_train_begin(self, logs=None):
    variables = self.model.trainable_variables
    self._all_finite = tf.function(lambda: tf.reduce_all(
        [tf.reduce_all(tf.math.is_finite(v)) for v in variables]))

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    bits = float(np.mean(np.asarray(logs['bits_per_dim'])))
    if not math.isfinite(bits):
      self._stop(step, f'bits/dim is {bits}')
    elif (step == self.last or
          step >= self._saved_at + self.manager.checkpoint_interval):
      if not bool(self._all_finite()):
        self._stop(step, 'the weights are not finite')
      else:
        self.manager.save(checkpoint_number=step,
                          check_interval=step != self.last)
        self._saved_at = step

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

  def __init__(self, log_dir, trained, temperatures, guard):
    super().__init__()
    self.writer = tf.summary.create_file_writer(os.path.join(log_dir,
                                                             'samples'))
    self.trained = trained
    self.temperatures = temperatures
    self.guard = guard

  def on_epoch_end(self, epoch, logs=None):
    if self.guard.diverged:
      return
    grid = run_lib.sample_grid(self.trained, self.temperatures,
                               _samples_per_row(self.trained))
    with self.writer.as_default():
      tf.summary.image('samples', grid[None],
                       step=int(self.model.optimizer.iterations.numpy()))
    self.writer.flush()

  def on_train_end(self, logs=None):
    self.writer.close()


def _samples_per_row(trained):
  """Samples per row of the sample grids: one per class of a conditional
  flow (at least `SAMPLES_PER_ROW`)."""
  return max(SAMPLES_PER_ROW, trained.num_classes or 0)


def data_and_config(options, saved=None):
  """Train and held-out `uint8` datasets (of `(image, label)` pairs for a
  conditional run), and the run configuration (see `run.resolved` for
  `saved`)."""
  name = data.canonical_name(options['dataset'])
  size = options['image_size'] or data.default_image_size(name)
  split = options['eval_split'] or data.default_eval_split(name)
  conditional = options.get('conditional', False)
  train_images, test_images = (
      data.load_images(name, split_name, size, options['data_dir'],
                       options['download'], labels=conditional)
      for split_name in ('train', split))
  config = {key: options[key] for key in run_lib.RUN_KEYS if key in options}
  image_spec = (train_images.element_spec[0] if conditional else
                train_images.element_spec)
  config.update(
      dataset=name, image_size=size, channels=int(image_spec.shape[-1]),
      num_classes=(len(data.class_names(name, options['data_dir']))
                   if conditional else None))
  return train_images, test_images, run_lib.resolved(config, saved)


def _restore_or_start(config, strategy, run_dir, write_dir, interval, chief):
  """The model (compiled with its optimizer), restored from the run's
  newest checkpoint if there is one, and the checkpoint manager, writing to
  `write_dir` every `interval` steps."""
  path = run_dir.latest_checkpoint()
  if path:
    if run_dir.read_config() is None:
      raise run_lib.RunError(
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
  return model, run_dir.checkpoint_manager(
      checkpoint, write_dir, optimizer.iterations, interval)


def _fit(model, manager, train_images, config, options, log_dir, trained,
         temperatures):
  """Trains from the restored step to `options['steps']`, epoch by epoch
  (`fit_segments`), from the run's training stream."""
  start = int(model.optimizer.iterations.numpy())
  guard = Guard(manager, start, options['steps'])
  stream = run_lib.training_stream(train_images, config)
  for first, initial_epoch, epochs, epoch_steps in fit_segments(
      start, options['steps'], options['steps_per_epoch']):
    model.fit(
        stream.skip(first), initial_epoch=initial_epoch, epochs=epochs,
        steps_per_epoch=epoch_steps, shuffle=False,  # The stream is shuffled.
        callbacks=[
            guard,
            keras.callbacks.TensorBoard(log_dir, write_graph=False,
                                        profile_batch=0),
            SampleImages(log_dir, trained, temperatures, guard),
        ])
    if guard.diverged:
      raise run_lib.RunError(guard.diverged)


def train(options, strategy=None):
  """The whole run that `options` describe (see the module docstring),
  under `strategy` (default: `make_strategy(options['strategy'])`).

  Returns:
    dict with 'test_bits_per_dim', 'step' (the optimizer steps done),
    'model_dir', and for a conditional run 'test_accuracy'.
  """
  strategy = strategy or make_strategy(options['strategy'])
  run_dir = run_lib.RunDirectory(options['model_dir'])
  chief = strategy.extended.should_checkpoint
  # Non-chief workers write what the chief writes, where it is thrown away.
  write_dir = run_dir.path if chief else tempfile.mkdtemp(
      prefix='cinc-worker-')
  try:
    saved = run_dir.read_config() if run_dir.latest_checkpoint() else None
    train_images, test_images, config = data_and_config(options, saved)
    model, manager = _restore_or_start(
        config, strategy, run_dir, write_dir, options['checkpoint_every'],
        chief)
    trained = run_lib.TrainedFlow.from_model(model, config['dataset'])
    temperatures = [float(t) for t in options['temperatures']]
    _fit(model, manager, train_images, config, options,
         os.path.join(write_dir, 'tensorboard'), trained, temperatures)
    step = int(model.optimizer.iterations.numpy())

    # The run's checkpoints are final: the averaged weights replace the raw.
    training.use_averaged_weights(model, model.optimizer)
    metrics = run_lib.evaluate(trained, test_images)
    if chief:
      data.write_image(os.path.join(write_dir, 'samples.png'),
                       run_lib.sample_grid(trained, temperatures,
                                           _samples_per_row(trained)))
    if options['export']:
      export.save(model, os.path.join(write_dir, 'saved_model'))
  finally:
    if not chief:
      shutil.rmtree(write_dir, ignore_errors=True)
  result = {'test_bits_per_dim': metrics['bits_per_dim'], 'step': step,
            'model_dir': run_dir.path}
  if 'accuracy' in metrics:
    result['test_accuracy'] = metrics['accuracy']
  return result
