"""Exports a trained CInC flow as a SavedModel that serves with plain TensorFlow.

  python -m train.export --checkpoint_dir=DIR [--output=PATH]

`--checkpoint_dir` is a `train.train` model directory: the flow is rebuilt
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
from train import common

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """Defines the command's flags in `flag_values`."""
  flags.DEFINE_string('checkpoint_dir', None,
                      'Model directory of a train.train run.',
                      required=True, flag_values=flag_values)
  flags.DEFINE_string('output', None,
                      'SavedModel path; default CHECKPOINT_DIR/saved_model.',
                      flag_values=flag_values)


def run(flag_values=FLAGS):
  """Exports as the flags say; returns the SavedModel path."""
  output = flag_values.output or os.path.join(flag_values.checkpoint_dir,
                                              'saved_model')
  common.check_output_path(output, 'output', directory=True)
  model, _, step = common.restore_for_inference(flag_values.checkpoint_dir)
  export.save(model, output)
  print(f'Step {step}; SavedModel: {output}', flush=True)
  return output


if __name__ == '__main__':
  define_flags()
  common.run_main(run)
