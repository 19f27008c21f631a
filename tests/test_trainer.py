"""The course of a training run (`cinc_tfp.trainer`), through `train.run` in
this process (or the command in two processes for the strategies that need
their own): fit segments, resuming to the same weights, divergence, TFDS and
folder data, tf.distribute strategies, samples that stay finite."""

import json
import math
import subprocess

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from cinc_tfp import flow
from cinc_tfp import run as run_lib
from cinc_tfp import trainer
from tests import train_helpers as helpers
from train import train


@pytest.mark.parametrize('start, steps, per_epoch, expected', [
    (0, 6, 3, [(0, 0, 2, 3)]),
    (0, 7, 3, [(0, 0, 2, 3), (6, 2, 3, 1)]),
    (4, 10, 3, [(4, 1, 2, 2), (6, 2, 3, 3), (9, 3, 4, 1)]),
    (2, 3, 5, [(2, 0, 1, 1)]),
    (6, 6, 3, []),
    (8, 6, 3, []),
])
def test_fit_segments(start, steps, per_epoch, expected):
  assert trainer.fit_segments(start, steps, per_epoch) == expected


def test_resumed_training_matches_uninterrupted_training(tmp_path):
  """The same weights, moments and averages whether a run goes in one piece
  or stops and resumes mid-epoch: the data stream resumes where it was and
  training goes on from the raw weights, never from their average."""
  args = (*helpers.QUICK, '--steps_per_epoch=3', '--checkpoint_every=2',
          '--ema=0.9', '--learning_rate=0.01', '--warmup_steps=0')
  train.run(helpers.train_flags(f'--model_dir={tmp_path / "whole"}', '--steps=6', *args))
  for steps in (4, 6):
    train.run(helpers.train_flags(f'--model_dir={tmp_path / "resumed"}', f'--steps={steps}',
                     *args))
  helpers.assert_same_checkpoints(tmp_path / 'resumed' / 'ckpt-6',
                           tmp_path / 'whole' / 'ckpt-6')
  # The checkpoint holds the raw weights; evaluation uses their averages.
  model, _, _ = run_lib.RunDirectory(
      tmp_path / 'whole').restore_for_inference()
  averaged = [weight.numpy() for weight in model.weights]
  tf.train.Checkpoint(model=model).read(
      str(tmp_path / 'whole' / 'ckpt-6')).expect_partial()
  raw = [weight.numpy() for weight in model.weights]
  assert not all(np.allclose(a, r) for a, r in zip(averaged, raw))


def test_divergence_stops_with_a_clear_error_and_keeps_a_good_checkpoint(
    tmp_path):
  model_dir = tmp_path / 'run'
  result = helpers.run(
      'train', f'--model_dir={model_dir}', *helpers.TINY, '--steps=30',
      '--checkpoint_every=1', '--learning_rate=1e6', '--warmup_steps=0')
  helpers.assert_fails_with_one_line(result, 'error: Training diverged',
                                     'last good checkpoint')
  step = helpers.checkpoint_step(model_dir)
  assert step is not None and step < 30
  model, _, restored = run_lib.RunDirectory(model_dir).restore_for_inference()
  assert restored == step
  assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)
  assert not (model_dir / 'saved_model').exists()


def _fixed_examples(builder, split, **unused_kwargs):
  """24 random images of the dataset's shape, 45x37 where it has none
  (and labels, if it has them), the same for every split and epoch. (The
  default mock draws every example anew in Python: filling the first
  10,000-image shuffle block took 7 s.)"""
  del split
  features = builder.info.features
  shape = [size or odd for size, odd in zip(features['image'].shape,
                                            (45, 37, 3))]
  rng = np.random.default_rng(0)
  examples = {'image': rng.integers(0, 256, size=(24, *shape),
                                    dtype=np.uint8)}
  if 'label' in features:
    examples['label'] = rng.integers(0, features['label'].num_classes, 24)
  return tf.data.Dataset.from_tensor_slices(examples)


@pytest.mark.parametrize('dataset, channels', [
    ('cifar10', 3),
    ('downsampled_imagenet/64x64', 3),  # Of no fixed size; no 'test'.
])
def test_tfds_datasets(dataset, channels, tmp_path):
  with tfds.testing.mock_data(as_dataset_fn=_fixed_examples):
    result = train.run(helpers.train_flags(
        f'--model_dir={tmp_path}', f'--dataset={dataset}', *helpers.QUICK,
        '--steps=2', '--steps_per_epoch=2'))
  assert result['step'] == 2 and math.isfinite(result['test_bits_per_dim'])
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['dataset'] == dataset and config['channels'] == channels


def test_folder_dataset_skips_a_corrupt_file(tmp_path, caplog):
  folder = tmp_path / 'images'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(12):
    image = rng.integers(0, 256, size=(10 + i, 12, 3), dtype=np.uint8)
    (folder / f'{i:02d}.png').write_bytes(tf.io.encode_png(image).numpy())
  (folder / 'corrupt.png').write_bytes(b'not a png')
  (folder / 'dangling.png').symlink_to(tmp_path / 'gone.png')
  (folder / 'folder.png').mkdir()  # Walked as a folder, not read as a file.
  result = train.run(helpers.train_flags(
      f'--model_dir={tmp_path / "run"}', f'--dataset=folder:{folder}',
      *helpers.QUICK, '--steps=2', '--steps_per_epoch=2'))
  assert result['step'] == 2 and math.isfinite(result['test_bits_per_dim'])
  assert 'Skipped 2 of 14 image files' in caplog.text
  assert (tmp_path / 'run' / 'samples.png').exists()
  assert not (tmp_path / 'run' / 'saved_model').exists()  # --noexport


# With --recompute: fit and evaluate of a recomputing flow under the strategy.
@pytest.mark.slow  # Two processes that start a gRPC cluster: about a minute.
def test_multi_worker_mirrored_strategy_with_two_local_workers(tmp_path):
  model_dir = tmp_path / 'run'
  cluster = {'worker': [f'127.0.0.1:{helpers.free_port()}' for _ in range(2)]}
  logs = [tmp_path / f'worker{index}.log' for index in range(2)]
  workers = []
  for index, log in enumerate(logs):
    tf_config = json.dumps({'cluster': cluster,
                            'task': {'type': 'worker', 'index': index}})
    with open(log, 'w') as output:
      workers.append(subprocess.Popen(
          helpers.command('train', '--strategy=multi_worker',
                          f'--model_dir={model_dir}', *helpers.TINY,
                          '--steps=4', '--steps_per_epoch=2',
                          '--checkpoint_every=2', '--recompute'),
          cwd=helpers.ROOT, env=helpers.env(TF_CONFIG=tf_config),
          stdout=output, stderr=subprocess.STDOUT))
  try:
    for process in workers:
      process.wait(timeout=300)
  finally:
    for process in workers:
      if process.poll() is None:
        process.kill()
  outputs = [log.read_text() for log in logs]
  for process, output in zip(workers, outputs):
    assert process.returncode == 0, output[-3000:]
  bits = [helpers.printed_bits_per_dim(output) for output in outputs]
  assert bits[0] == pytest.approx(bits[1], abs=1e-4)  # One model, in sync.
  assert helpers.checkpoint_step(model_dir) == 4
  assert json.loads((model_dir / 'config.json').read_text())['recompute']
  assert (model_dir / 'saved_model' / 'saved_model.pb').exists()
  assert (model_dir / 'samples.png').exists()


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
  result = helpers.run('train', '--strategy=mirrored',
                       f'--model_dir={tmp_path}', *helpers.QUICK, '--steps=2',
                       '--steps_per_epoch=2')
  assert result.returncode == 0, result.stderr[-3000:]
  assert math.isfinite(helpers.printed_bits_per_dim(result.stdout))


def test_run_that_stopped_before_its_first_checkpoint_can_start_over(
    tmp_path):
  args = (f'--model_dir={tmp_path}', *helpers.QUICK, '--steps=4',
          '--steps_per_epoch=2', '--warmup_steps=0')
  with pytest.raises(run_lib.RunError, match="no checkpoint was written"):
    train.run(helpers.train_flags(*args, '--learning_rate=1e30'))
  assert helpers.checkpoint_step(tmp_path) is None
  # Other options, as the error advises: a new run, not a mismatch.
  result = train.run(helpers.train_flags(*args, '--learning_rate=1e-3'))
  assert result['step'] == 4
  assert json.loads((tmp_path / 'config.json').read_text())[
      'learning_rate'] == 1e-3


@pytest.mark.slow  # The default model trained, 3,000 samples: 40-200 s.
def test_default_model_samples_are_finite_up_to_temperature_one(tmp_path,
                                                                full):
  """The default model after 600 steps (`--full`; else 200), sampled 1,000
  times at each temperature: every image is finite. (Before the coupling
  scale had its floor and the split prior's log-sigma its bound, 1,037 of
  10,000 were not at temperature 1 after 600 steps: about 100 of 1,000.)"""
  model_dir = tmp_path / 'run'
  steps = 600 if full else 200
  train.run(helpers.train_flags(
      f'--model_dir={model_dir}', f'--steps={steps}',
      f'--steps_per_epoch={steps}', '--temperatures=1.0', '--noexport'))
  model, _, _ = run_lib.RunDirectory(model_dir).restore_for_inference()
  sample = tf.function(model.sample)  # Traced once: tensor arguments.
  for temperature in (1.0, 0.9, 0.7):
    images = sample(tf.constant(1000), tf.constant(temperature),
                    tf.constant([0, 11]))
    invalid = int(tf.reduce_sum(tf.cast(~flow.finite_images(images),
                                        tf.int32)))
    assert invalid == 0, (temperature, invalid)
