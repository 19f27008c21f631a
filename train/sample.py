"""Samples from a trained CInC flow, or interpolates between two images.

  python -m train.sample --model_dir=DIR --output=samples.png \
      [--num_samples=64] [--temperature=0.7] [--seed=0]
  python -m train.sample --saved_model=PATH --output=row.png \
      --interpolate=3,17 [--steps=8] [--dataset=NAME] [--split=test]
  python -m train.sample --model_dir=DIR --output=row.png \
      --interpolate=a.png,b.jpg

The flow comes from a `train.train` model directory (its newest checkpoint,
EMA weights if kept) or from a `cinc_tfp.export` SavedModel.

Sampling writes `--num_samples` images drawn at `--temperature` (the base
normal scaled by it, as in Glow) as a square-ish grid (PNG, or JPEG for a .jpg
`--output`). The same `--seed`
gives the same images.

A class-conditional flow samples the classes `--labels=3,3,7` (one image
each), or writes `--per_class=N` images of every class, one row per class; by
default sample `i` is of class `i % K`.

`--interpolate=A,B` takes two images, each a dataset index (of `--split` of
`--dataset`, by default the run's dataset, or the embedded digits for a
SavedModel) or an image file (centre-cropped to a square and resized to the
model's size). Both are dequantized (seed `--seed`), encoded, and the latents
`(1 - a) z_A + a z_B` for `a` from 0 to 1 in `--steps + 1` equal steps are
decoded: a row of the two images with `--steps` frames between them. For a
class-conditional flow, `--labels=a,b` gives their classes (the frames are
decoded with `a`'s).
"""

import os
import sys

# Quieter TensorFlow C++ logging unless asked otherwise; before TF loads.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
import numpy as np
import tensorflow as tf

from cinc_tfp import data
from cinc_tfp import flow as flow_lib
from cinc_tfp import run as run_lib
from . import cli_flags
from . import common

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """Defines the command's flags in `flag_values`."""
  fv = flag_values
  cli_flags.define_data_flags(fv, dataset_default=None)
  cli_flags.define_model_source_flags(fv)
  flags.DEFINE_string('output', None,
                      'Path of the image to write: .png, .jpg or .jpeg.',
                      flag_values=fv)
  flags.DEFINE_integer('num_samples', 64, 'Number of samples.', lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_float('temperature', 0.7, 'Sampling temperature.',
                     lower_bound=0., flag_values=fv)
  cli_flags.require_finite(fv, 'temperature')
  flags.register_validator('temperature', lambda t: t > 0,
                           '--temperature must be above 0', flag_values=fv)
  flags.DEFINE_integer('seed', 0, 'Seed of the samples (and of the '
                       'dequantization noise of interpolated images).',
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_list('interpolate', None,
                    'Two images, A,B: dataset indices or image files.',
                    flag_values=fv)
  flags.DEFINE_integer('steps', 8, 'Frames between the two images.',
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_string('split', None,
                      "Split of the --interpolate indices; default 'test' "
                      "('validation' for the ImageNet variants).",
                      flag_values=fv)
  flags.DEFINE_list('labels', None,
                    'Classes of the samples (one image each), or of the two '
                    '--interpolate images: a class-conditional flow.',
                    flag_values=fv)
  flags.DEFINE_integer('per_class', None,
                       'Samples of every class, one row per class: a '
                       'class-conditional flow.', lower_bound=1,
                       flag_values=fv)
  flags.mark_flags_as_mutual_exclusive(['labels', 'per_class'],
                                       flag_values=fv)
  flags.register_validator(
      'labels', lambda labels: labels is None or (
          labels and all(label.isdigit() for label in labels)),
      '--labels must be class indices: 0,1,...', flag_values=fv)
  flags.mark_flag_as_required('output', flag_values=fv)
  flags.register_validator(
      'output', lambda path: path is None or _is_image_path(path),
      '--output must name a .png, .jpg or .jpeg file', flag_values=fv)
  flags.register_validator(
      'interpolate', lambda pair: pair is None or len(pair) == 2,
      '--interpolate takes two images: A,B', flag_values=fv)


def _is_image_path(path):
  try:
    data.check_image_path(path)
  except data.DataError:
    return False
  return True


def _endpoints(flow, items, dataset, split, data_dir, download):
  """The two `uint8` images named by `--interpolate`."""
  images = None
  picked = []
  for item in items:
    if item.startswith('-') and item[1:].isdigit():
      raise common.TrainError(
          f'--interpolate: dataset indices start at 0, got {item}.')
    if not item.isdigit():
      size, _, channels = flow.image_shape
      picked.append(data.load_image_file(item, size, channels))
      continue
    if images is None:
      images = run_lib.load_split(flow, dataset, split, data_dir, download)
    found = list(images.skip(int(item)).take(1))
    if not found:
      raise common.TrainError(
          f'--interpolate: split {split!r} of {dataset!r} has no image '
          f'{item}.')
    picked.append(found[0])
  return tf.stack(picked)


def _warn_if_not_finite(images, what):
  """Says on stderr how many images the inverse could not compute (they
  would be black tiles)."""
  finite = np.asarray(flow_lib.finite_images(images))
  if not finite.all():
    print(f'warning: {int((~finite).sum())} of {len(finite)} {what} are not '
          f'finite (the inverse overflowed); they show as black tiles.',
          file=sys.stderr, flush=True)


def _labels(fv):
  """The labels of `--labels` (None if not given); `TrainedFlow` checks them
  against its classes."""
  return None if fv.labels is None else np.array([int(l) for l in fv.labels])


def run(flag_values=FLAGS):
  """Writes the samples or the interpolation; returns the grid written."""
  fv = flag_values
  run_lib.check_writable(fv.output, '--output', directory=False)
  flow = cli_flags.trained_flow(fv)
  labels = _labels(fv)
  if fv.interpolate and flow.num_classes is not None and (
      labels is None or len(labels) != 2):
    raise common.TrainError(
        '--interpolate of a class-conditional flow: give the two images\' '
        'classes as --labels=A,B.')
  if labels is not None:  # Checked before any data is loaded.
    flow.check_labels(labels, 2 if fv.interpolate else len(labels))
  if fv.interpolate:
    dataset, split = cli_flags.evaluation_data(fv, flow)
    row = flow.interpolate(_endpoints(flow, fv.interpolate, dataset, split,
                                      fv.data_dir, fv.download), fv.steps,
                           fv.seed, labels)
    _warn_if_not_finite(row, 'frames')
    grid = data.image_grid(np.asarray(data.quantize(row, flow.n_bits)),
                           rows=1)
  elif fv.per_class:
    grid = run_lib.class_grid(flow, fv.per_class, fv.temperature, fv.seed)
  else:
    count = fv.num_samples if labels is None else len(labels)
    if labels is None:
      labels = run_lib.cycled_labels(flow, count)
    images = flow.sample(count, fv.temperature, [fv.seed, 0], labels)
    _warn_if_not_finite(images, 'samples')
    grid = data.image_grid(np.asarray(data.quantize(images, flow.n_bits)))
  output = run_lib.resolve(fv.output)
  tf.io.gfile.makedirs(os.path.dirname(output))
  data.write_image(output, grid)
  print(f'Wrote {fv.output}.', flush=True)
  return grid


def main():
  """The console script's entry point (`cinc-sample`)."""
  define_flags()
  common.run_main(run)


if __name__ == '__main__':
  main()
