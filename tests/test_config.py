"""FlowConfig: the model options, declared once and checked."""

import json

from absl import flags
import pytest

import cinc_tfp
from cinc_tfp import config
from cinc_tfp import run
from train import cli_flags


def test_defaults_round_trip_through_json_and_the_model():
  made = config.FlowConfig((8, 8, 3))
  assert config.FlowConfig(**json.loads(json.dumps(made.as_dict()))) == made
  model = cinc_tfp.CIncFlow((8, 8, 3), levels=1, depth=1, width=4, seed=2)
  assert model.config == config.FlowConfig((8, 8, 3), levels=1, depth=1,
                                           width=4, seed=2)
  options = {key: value for key, value in model.get_config().items()
             if key not in ('name', 'dtype')}
  assert options == model.config.as_dict()


def test_every_option_is_a_flag_of_the_commands_and_a_run_key():
  names = [option.name for option in config.FlowConfig.options()]
  assert run.MODEL_KEYS == tuple(names)
  flag_values = flags.FlagValues()
  cli_flags.define_data_flags(flag_values)
  cli_flags.define_model_flags(flag_values, dict(batch_size=8, levels=2))
  flag_values.mark_as_parsed()
  for option in config.FlowConfig.options():
    if option.metadata['from_data']:  # e.g. num_classes, from --conditional.
      assert option.name not in flag_values
      continue
    flag = flag_values[option.name]
    assert flag.help.endswith(option.metadata['help'])
    expected = 2 if option.name == 'levels' else option.default
    assert flag.default == expected, option.name


@pytest.mark.parametrize('options, message', [
    (dict(levels=0), 'levels must be a positive int'),
    (dict(depth=1.5), 'depth must be a positive int'),
    (dict(kernel_size=4), 'kernel_size must be odd'),
    (dict(n_bits=9), r'n_bits must be in 1\.\.8'),
    (dict(seed=-1), 'seed must be 0 or more'),
    (dict(seed='0'), 'seed must be an int'),
    (dict(conv='3x3'), 'conv must be one of'),
    (dict(recompute=1), 'recompute must be True or False'),
    (dict(num_classes=1), 'num_classes must be 2 or more'),
    (dict(num_classes=2.), 'num_classes must be an int'),
    (dict(corner='centre'), 'corner must be one of'),
    (dict(levels=4), r'divisible by 2\*\*levels = 16 to squeeze 4 times, '
                     'got 8x8 images'),
])
def test_bad_options_are_a_clear_error(options, message):
  with pytest.raises(ValueError, match=f'^CIncFlow: .*{message}'):
    config.FlowConfig((8, 8, 3), **options)
  with pytest.raises(ValueError, match=f'^CIncFlow: .*{message}'):
    cinc_tfp.CIncFlow((8, 8, 3), **options)


def test_bad_image_shapes_are_a_clear_error():
  with pytest.raises(ValueError, match=r'image_shape must be \(H, W, C\)'):
    config.FlowConfig((8, 8))
  with pytest.raises(ValueError, match='image channels must be a positive int'):
    config.FlowConfig((8, 8, 0))


@pytest.mark.parametrize('option', ['recompute', 'reverse_channels'])
def test_switches_and_old_run_configs_read_as_off(option, tmp_path):
  flag_values = flags.FlagValues()
  cli_flags.define_data_flags(flag_values)
  cli_flags.define_model_flags(flag_values, dict(batch_size=8))
  flag_values(['prog', f'--{option}'])
  assert flag_values[option].value is True
  saved = dict(dataset='embedded', image_size=8, channels=1, batch_size=8,
               optimizer='adamax', learning_rate=1e-3, warmup_steps=0, ema=0.,
               **config.FlowConfig((8, 8, 1), **{option: True}).as_dict())
  del saved['image_shape']
  run_dir = run.RunDirectory(tmp_path / 'run')
  run_dir.write_config(saved)
  assert run_dir.read_config()[option] is True
  # A run written before the option existed: trained with it off.
  del saved[option]
  (tmp_path / 'run' / 'config.json').write_text(json.dumps(saved))
  assert run_dir.read_config()[option] is False
  for value in (1, None):  # A switch's value is saved, never its default.
    (tmp_path / 'run' / 'config.json').write_text(
        json.dumps(dict(saved, **{option: value})))
    with pytest.raises(run.RunError,
                       match=rf'wrong type: {option} \({value}\)'):
      run_dir.read_config()


def test_channels_are_reversed_by_default_where_the_convolution_needs_it():
  assert config.FlowConfig((8, 8, 3)).reverse_channels is True
  assert config.FlowConfig((8, 8, 3), conv='emerging').reverse_channels is True
  assert config.FlowConfig((8, 8, 3), conv='1x1').reverse_channels is False
  for conv in config.CONVS:
    for value in (False, True):
      made = config.FlowConfig((8, 8, 3), conv=conv, reverse_channels=value)
      assert made.reverse_channels is value
      assert made.as_dict()['reverse_channels'] is value
  flag_values = flags.FlagValues()
  cli_flags.define_data_flags(flag_values)
  cli_flags.define_model_flags(flag_values, dict(batch_size=8))
  flag_values(['prog', '--noreverse_channels'])
  assert flag_values.reverse_channels is False
  # A run's configuration records the value, not the default.
  options = dict(dataset='embedded', image_size=8, channels=1, conv='1x1',
                 reverse_channels=None)
  filled = run.resolved(options)
  expected = config.FlowConfig((8, 8, 1), conv='1x1').as_dict()
  del expected['image_shape']
  assert filled == dict(options, **expected)
  assert filled['reverse_channels'] is False
  with pytest.raises(run.RunError, match='levels must be a positive int'):
    run.resolved(dict(options, levels=0))
