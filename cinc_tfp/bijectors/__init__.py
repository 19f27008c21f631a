"""Invertible image layers of a CInC flow, as TFP bijectors (event rank 3)."""

from cinc_tfp.bijectors import init
from cinc_tfp.bijectors.actnorm import ActNorm
from cinc_tfp.bijectors._block_coupling import SCALES
from cinc_tfp.bijectors.affine_coupling import AffineCoupling
from cinc_tfp.bijectors.cinc_conv import CIncConv2D
from cinc_tfp.bijectors.conv1x1 import Conv1x1
from cinc_tfp.bijectors.emerging_conv import EmergingConv2D
from cinc_tfp.bijectors.factor_out import FactorOut
from cinc_tfp.bijectors.fused import forward_and_log_det
from cinc_tfp.bijectors.fused import inverse_and_log_det
from cinc_tfp.bijectors.quad_coupling import QuadCoupling
from cinc_tfp.bijectors.recompute import Recompute
from cinc_tfp.bijectors.squeeze import Squeeze
from cinc_tfp.bijectors.triangular_conv import CORNERS

__all__ = [
    'ActNorm',
    'AffineCoupling',
    'CIncConv2D',
    'CORNERS',
    'Conv1x1',
    'EmergingConv2D',
    'FactorOut',
    'QuadCoupling',
    'Recompute',
    'SCALES',
    'Squeeze',
    'forward_and_log_det',
    'init',
    'inverse_and_log_det',
]
