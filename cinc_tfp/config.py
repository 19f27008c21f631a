"""The configuration of a CInC flow: every model option, declared once.

`FlowConfig` holds the options of `CIncFlow` with their defaults, help texts
and allowed values, and checks them. From it come `CIncFlow.get_config()`,
the model part of a run's `config.json` (`cinc_tfp.run`), the SavedModel's
`config_json` (`cinc_tfp.export`) and the model flags of the commands
(`train/cli_flags.py` defines one flag per option of `FlowConfig.options()`
but those set from the data, `num_classes`).
"""

import dataclasses
import numbers
import typing

import numpy as np

from cinc_tfp.bijectors import _util
from cinc_tfp.bijectors import CORNERS
from cinc_tfp.bijectors import SCALES

__all__ = ['CONVS', 'COUPLINGS', 'CORNER_CYCLE', 'FlowConfig']

CONVS = ('cinc', 'emerging', '1x1')
COUPLINGS = ('quad', 'affine')
CORNER_CYCLE = 'cycle'


def _option(default, help_text, choices=None, lower=1, upper=None, odd=False,
            from_data=False, boolean=None):
  """A field of `FlowConfig`: an int in `[lower, upper]` (odd if `odd`; also
  `None` when that is the default), one of `choices`, or a bool when
  `default` is one or `boolean` is true (a boolean whose default `None`
  `FlowConfig` resolves). `from_data`: set from the dataset by the
  commands, not a flag of its own."""
  return dataclasses.field(default=default, metadata=dict(
      help=help_text, choices=choices, lower=lower, upper=upper, odd=odd,
      boolean=isinstance(default, bool) if boolean is None else boolean,
      optional=default is None, from_data=from_data))


@dataclasses.dataclass(frozen=True)
class FlowConfig:
  """The options of a `CIncFlow`, checked when made (a `ValueError` names the
  first bad one)."""

  image_shape: typing.Tuple[int, int, int]
  levels: int = _option(3, 'Levels L of the multi-scale flow (squeezes).')
  depth: int = _option(8, 'Flow steps D per level.')
  width: int = _option(128, 'Hidden channels of the coupling networks.')
  conv: str = _option('cinc',
                      "Invertible convolution: CInC, Emerging or Glow's 1x1.",
                      choices=CONVS)
  coupling: str = _option('quad', 'Coupling layer.', choices=COUPLINGS)
  kernel_size: int = _option(3, 'Odd kernel size of the CInC convolutions.',
                             odd=True)
  scale: str = _option('sigmoid', 'Scale function of the couplings: '
                       "sigmoid(h + 2) or exp.", choices=SCALES)
  corner: str = _option(CORNER_CYCLE, 'Padded corner of the CInC '
                        "convolutions ('cycle': each corner in turn, step "
                        'after step).', choices=(CORNER_CYCLE,) + CORNERS)
  reverse_channels: typing.Optional[bool] = _option(
      None, "Reverse the channels between each step's convolution and its "
      'coupling (RealNVP\'s and Glow\'s "reverse", folded into the '
      'convolution at no cost), so that each coupling conditions on what the '
      'one before transformed: the triangular centre tap of a CInC or '
      'Emerging convolution passes channels one way only. Default: on for '
      "CInC and Emerging, off for Glow's 1x1, which mixes every channel "
      "itself (the papers' flow steps have no reversal).", boolean=True)
  n_bits: int = _option(8, 'Bits per channel of the data (8, or fewer as in '
                        'Glow).', upper=8)
  seed: int = _option(0, 'Seed of the initial weights (and of the data order, '
                      'when training).', lower=0)
  recompute: bool = _option(
      False, "Train without storing the flow steps' activations: the "
      "gradient rebuilds each level's step inputs from the level's output "
      'with the exact inverse (memory flat in depth, for more compute).')
  num_classes: typing.Optional[int] = _option(
      None, 'Classes K of a class-conditional flow (labels 0..K-1): every '
      'prior adds a learned per-class offset to its mean and log scale. '
      'None: unconditional.', lower=2, from_data=True)

  @classmethod
  def options(cls):
    """The fields that are options (all but `image_shape`), in order."""
    return dataclasses.fields(cls)[1:]

  def __post_init__(self):
    shape = tuple(self.image_shape)
    if len(shape) != 3:
      raise ValueError(
          f'CIncFlow: image_shape must be (H, W, C), got {self.image_shape!r}.')
    for size, name in zip(shape, ('image height', 'image width',
                                  'image channels')):
      _util.positive_int(size, f'CIncFlow: {name}')
    object.__setattr__(self, 'image_shape', tuple(int(s) for s in shape))
    for field in self.options():
      object.__setattr__(self, field.name,
                         _checked(field, getattr(self, field.name)))
    if self.reverse_channels is None:
      object.__setattr__(self, 'reverse_channels', self.conv != '1x1')
    height, width, _ = self.image_shape
    if height % 2**self.levels or width % 2**self.levels:
      raise ValueError(
          f'CIncFlow: image height and width must be divisible by 2**levels = '
          f'{2**self.levels} to squeeze {self.levels} times, got '
          f'{height}x{width} images.')

  def as_dict(self):
    """The options and `image_shape` (a list), as JSON writes them."""
    return dict(dataclasses.asdict(self), image_shape=list(self.image_shape))


def _checked(field, value):
  """`value` of the option `field`, checked (ints and bools made Python's)."""
  meta = field.metadata
  if value is None and meta['optional']:
    return None
  if meta['boolean']:
    if not isinstance(value, (bool, np.bool_)):
      raise ValueError(f'CIncFlow: {field.name} must be True or False, got '
                       f'{value!r}.')
    return bool(value)
  if meta['choices'] is not None:
    if value not in meta['choices']:
      raise ValueError(f'CIncFlow: {field.name} must be one of '
                       f"{meta['choices']}, got {value!r}.")
    return value
  lower, upper = meta['lower'], meta['upper']
  if lower == 1:
    value = _util.positive_int(value, f'CIncFlow: {field.name}')
  elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise ValueError(f'CIncFlow: {field.name} must be an int, got {value!r}.')
  elif value < lower:
    raise ValueError(f'CIncFlow: {field.name} must be {lower} or more, got '
                     f'{value}.')
  value = int(value)
  if upper is not None and value > upper:
    raise ValueError(f'CIncFlow: {field.name} must be in {lower}..{upper}, '
                     f'got {value!r}.')
  if meta['odd'] and value % 2 == 0:
    raise ValueError(f'CIncFlow: {field.name} must be odd, got {value}.')
  return value
