"""Exports a trained CInC flow as a SavedModel that serves with plain TensorFlow.

  python -m train.export --model_dir=DIR [--output=PATH]

`--model_dir` is a `train.train` run directory: the flow is rebuilt
from its config.json and newest checkpoint, with the averaged (EMA) weights
if the run kept them. `--output` defaults to `DIR/saved_model`; the export is
atomic (`cinc_tfp.export.save`).
"""

import os

# Quieter TensorFlow C++ logging unless asked otherwise; before TF loads.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from cinc_tfp import export
from cinc_tfp import run as run_lib
from . import common

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """Defines the command's flags in `flag_values`."""
  flags.DEFINE_string('model_dir', None,
                      'Run directory of a train.train run.',
                      required=True, flag_values=flag_values)
  flags.DEFINE_string('output', None,
                      'SavedModel path; default MODEL_DIR/saved_model.',
                      flag_values=flag_values)


def run(flag_values=FLAGS):
  """Exports as the flags say; returns the SavedModel path."""
  run_dir = run_lib.RunDirectory(flag_values.model_dir)
  output = flag_values.output or run_dir.join('saved_model')
  run_lib.check_writable(output, '--output', directory=True)
  model, _, step = run_dir.restore_for_inference()
  export.save(model, output)
  print(f'Step {step}; SavedModel: {output}', flush=True)
  return output


def main():
  """The console script's entry point (`cinc-export`)."""
  define_flags()
  common.run_main(run)


if __name__ == '__main__':
  main()
