"""Bits per dimension of a trained CInC flow on a dataset split.

  python -m train.evaluate --model_dir=DIR [--dataset=NAME] [--split=test]
  python -m train.evaluate --saved_model=PATH [--dataset=NAME] [--split=test]

`--model_dir` is a `train.train` run directory: the flow is rebuilt
from its config.json and the newest checkpoint, with the averaged (EMA)
weights if the run kept them (as `train.train` evaluates). `--saved_model` is
a `cinc_tfp.export` SavedModel. Images are resized to the model's image size
and dequantized with a fixed seed at the model's bit depth; the number
printed, `SPLIT bits/dim: X`, is the mean over every image of the split;
for a class-conditional flow, `SPLIT accuracy: X` before it is the accuracy
of its classification (Bayes' rule, uniform class prior) on the split's
labels.
`--dataset` defaults to the run's own dataset (from config.json), or to the
embedded digits for a SavedModel.
"""

import os

# Quieter TensorFlow C++ logging unless asked otherwise; before TF loads.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from cinc_tfp import run as run_lib
from . import cli_flags
from . import common

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """Defines the command's flags in `flag_values`."""
  fv = flag_values
  cli_flags.define_data_flags(fv, dataset_default=None)
  cli_flags.define_model_source_flags(fv)
  flags.DEFINE_string('split', None,
                      "Dataset split; default 'test' ('validation' for the "
                      'ImageNet variants).', flag_values=fv)
  flags.DEFINE_integer('batch_size', 256, 'Images per evaluation batch.',
                       lower_bound=1, flag_values=fv)


def run(flag_values=FLAGS):
  """Evaluates as the flags say; returns `(split, metrics)`, the metrics of
  `cinc_tfp.run.evaluate`."""
  flow = cli_flags.trained_flow(flag_values)
  dataset, split = cli_flags.evaluation_data(flag_values, flow)
  images = run_lib.load_split(flow, dataset, split, flag_values.data_dir,
                              flag_values.download,
                              labels=flow.num_classes is not None)
  metrics = run_lib.evaluate(flow, images, flag_values.batch_size)
  if 'accuracy' in metrics:
    print(f"{split} accuracy: {metrics['accuracy']:.4f}", flush=True)
  print(f"{split} bits/dim: {metrics['bits_per_dim']:.4f}", flush=True)
  return split, metrics


def main():
  """The console script's entry point (`cinc-evaluate`)."""
  define_flags()
  common.run_main(run)


if __name__ == '__main__':
  main()
