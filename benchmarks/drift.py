"""The `drift` benchmark: how far `recompute`'s rebuilt inputs stray, in a
trained flow.

`CIncFlow(recompute=True)` rebuilds each step's input from the level's
output with the exact inverse, step by step back through the level, so
rounding compounds over the level's D steps (never across levels: each
level's output is kept). For each depth D this trains a float32 CInC+quad
flow on the embedded digits (`train_steps` Adamax steps), then, on a batch
of held-out digits:

- the reconstruction error at each level's input after its D steps and
  their D inverses: the largest absolute error, and that over the largest
  absolute input (relative);
- the float32 gradient of the mean bits per dimension, with stored
  activations and with recompute, each against the float64 gradient at the
  same weights and batch: the largest absolute error over each variable's
  largest gradient entry, the worst variable. Recompute harms gradients
  only as far as its error exceeds the stored one's, float32's own.
"""

import keras
import tensorflow as tf

from cinc_tfp import bijectors
from cinc_tfp import data
from cinc_tfp import flow

from . import harness

IMAGE_SIZE = data.default_image_size(data.EMBEDDED)


def _trained(depth, levels, width, batch_size, train_steps, seed):
  images = data.load_images(data.EMBEDDED, 'train')
  stream = data.pipeline(images, batch_size, repeat=True, seed=seed)
  model = flow.CIncFlow((IMAGE_SIZE, IMAGE_SIZE, 1), levels=levels,
                        depth=depth, width=width, seed=seed)
  model.compile(optimizer=keras.optimizers.Adamax(1e-3))
  model.fit(stream, steps_per_epoch=train_steps, epochs=1, shuffle=False,
            verbose=0)
  return model


def level_drift(model, x):
  """`[(max abs error, relative error)]` per level: each level's input
  against itself rebuilt by the inverses of the level's steps."""
  errors = []
  for level in range(model.levels):
    x = bijectors.Squeeze().forward(x)
    steps = model.steps[level * model.depth:(level + 1) * model.depth]
    y = x
    for step in steps:
      y = step.chain().forward(y)
    rebuilt = y
    for step in reversed(steps):
      rebuilt = step.chain().inverse(rebuilt)
    error = float(tf.reduce_max(tf.abs(rebuilt - x)))
    errors.append((error, error / float(tf.reduce_max(tf.abs(x)))))
    x = tf.split(y, 2, axis=-1)[0]  # What the factor-out keeps.
  return errors


def gradient_errors(model, x):
  """`(stored, recomputed)`: the float32 gradients of the mean bits/dim with
  stored activations and with recompute, each against the same gradient in
  float64 (the same weights and batch), as the worst variable's largest
  absolute error over its largest float64 gradient entry. The first is
  float32's own rounding; recompute harms gradients only as far as the
  second exceeds it."""
  config = model.get_config()
  copies = [flow.CIncFlow.from_config(dict(config, recompute=recompute,
                                           dtype=dtype))
            for recompute, dtype in ((False, 'float32'), (True, 'float32'),
                                     (False, 'float64'))]
  for copy in copies:
    copy.set_weights(model.get_weights())

  def gradients(flow_model):
    images = tf.cast(x, flow_model.compute_dtype)

    @tf.function
    def compute():
      with tf.GradientTape() as tape:
        bits = tf.reduce_mean(flow_model.bits_per_dim(images))
      return tape.gradient(bits, flow_model.trainable_variables)
    return [tf.cast(g, tf.float64) for g in compute()]

  stored, recomputed, exact = [gradients(copy) for copy in copies]
  return tuple(
      max(float(tf.reduce_max(tf.abs(found - want)) /
                tf.reduce_max(tf.abs(want)))
          for want, found in zip(exact, candidate))
      for candidate in (stored, recomputed))


def run_drift(depths=(8, 16, 32), levels=2, width=64, batch_size=32,
              train_steps=300, seed=0):
  """Runs the `drift` benchmark and returns its report."""
  header = (f'TF {tf.__version__} | CInC+quad, float32, embedded digits '
            f'16x16x1, L={levels}, width {width}, trained {train_steps} '
            f'steps of batch {batch_size} | 64 held-out digits')
  test = data.pipeline(data.load_images(data.EMBEDDED, 'test'), 64,
                       shuffle=False, seed=seed)
  x = next(iter(test))
  rows = [['D'] + [f'level {level} {kind}' for level in range(levels)
                   for kind in ('max error', 'relative')] +
          ['gradient error, stored (relative)',
           'gradient error, recompute (relative)']]
  for depth in depths:
    model = _trained(depth, levels, width, batch_size, train_steps, seed)
    errors = level_drift(model, x)
    rows.append([str(depth)] + [f'{value:.1e}' for pair in errors
                                for value in pair] +
                [f'{error:.1e}' for error in gradient_errors(model, x)])
  return '\n\n'.join([header, harness.markdown(rows)])
