"""Invertible image layers of a CInC flow, as TFP bijectors (event rank 3)."""

from cinc_tfp.bijectors.actnorm import ActNorm
from cinc_tfp.bijectors.cinc_conv import CIncConv2D
from cinc_tfp.bijectors.conv1x1 import Conv1x1
from cinc_tfp.bijectors.emerging_conv import EmergingConv2D
from cinc_tfp.bijectors.squeeze import Squeeze
from cinc_tfp.bijectors.triangular_conv import CORNERS

__all__ = [
    'ActNorm',
    'CIncConv2D',
    'CORNERS',
    'Conv1x1',
    'EmergingConv2D',
    'Squeeze',
]
