"""cinc_tfp: the CInC flow (invertible 3x3 convolutions) for TFP and Keras 3.

* `cinc_tfp.bijectors`: the invertible layers as TFP bijectors.
* `cinc_tfp.CIncFlow` (`cinc_tfp.flow`): the multi-scale flow as a Keras
  model; `cinc_tfp.config.FlowConfig`: its options.
* `cinc_tfp.data`: dataset pipelines and dequantization.
* `cinc_tfp.export`: SavedModels that serve with plain TensorFlow.
* `cinc_tfp.run`: a training run's directory, checkpoints and trained flow.
* `cinc_tfp.trainer`: a whole training run, as `train.train` performs it.
* `cinc_tfp.training`: the paper's optimizer, warm-up and Polyak averaging.

The submodules that need TensorFlow Datasets or mlxtend (`data`, and
`export`, `run` and `trainer` above it) load on first use, so that
`import cinc_tfp.bijectors` or `cinc_tfp.CIncFlow` pulls in neither.
"""

import importlib

from cinc_tfp import bijectors
from cinc_tfp import config
from cinc_tfp import flow
from cinc_tfp import nets
from cinc_tfp import training
from cinc_tfp.flow import CIncFlow

__all__ = ['CIncFlow', 'bijectors', 'config', 'data', 'export', 'flow',
           'nets', 'run', 'trainer', 'training']
__version__ = '0.1.0'

_LAZY_SUBMODULES = ('data', 'export', 'run', 'trainer')


def __getattr__(name):
  if name in _LAZY_SUBMODULES:
    return importlib.import_module(f'cinc_tfp.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
