"""cinc_tfp: the CInC flow (invertible 3x3 convolutions) for TFP and Keras 3.

* `cinc_tfp.bijectors`: the invertible layers as TFP bijectors.
* `cinc_tfp.CIncFlow`: the multi-scale flow as a Keras model.
* `cinc_tfp.data`: dataset pipelines and dequantization.
* `cinc_tfp.export`: SavedModels that serve with plain TensorFlow.
* `cinc_tfp.training`: the paper's optimizer, warm-up and Polyak averaging.
"""

from cinc_tfp import bijectors
from cinc_tfp import data
from cinc_tfp import export
from cinc_tfp import nets
from cinc_tfp import training
from cinc_tfp.flow import CIncFlow

__all__ = ['CIncFlow', 'bijectors', 'data', 'export', 'nets', 'training']
__version__ = '0.1.0'
