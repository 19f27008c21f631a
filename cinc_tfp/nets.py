"""Keras 3 conditioning networks of the coupling layers and split priors."""

import keras

from cinc_tfp.bijectors import init

__all__ = ['CouplingNetwork', 'ZeroConv2D']


def ZeroConv2D(filters, name=None, dtype=None):  # pylint: disable=invalid-name
  """A 3x3 'same' convolution initialised to output zeros (Glow)."""
  return keras.layers.Conv2D(
      filters, 3, padding='same', kernel_initializer='zeros',
      bias_initializer='zeros', name=name, dtype=dtype)


class CouplingNetwork(keras.layers.Layer):
  """Glow's coupling network: 3x3 conv, ReLU, 1x1 conv, ReLU, zero 3x3 conv.

  Maps `[B, H, W, C_in]` to `[B, H, W, out_channels]`; it starts at zero, so
  a coupling layer using it starts as (a scaled) identity. Its two hidden
  kernels are Glorot-uniform, with seeds drawn from `seed` (an int; `None`
  for unseeded).
  """

  def __init__(self, out_channels, width, seed=None, **kwargs):
    super().__init__(**kwargs)
    self.out_channels = out_channels
    self.width = width
    self.seed = seed
    seeds = None if seed is None else init.SeedStream(seed, 'CouplingNetwork')
    glorot = lambda: keras.initializers.GlorotUniform(  # pylint: disable=g-long-lambda
        seed=None if seeds is None else seeds())
    self.hidden_in = keras.layers.Conv2D(
        width, 3, padding='same', activation='relu',
        kernel_initializer=glorot(), dtype=self.dtype_policy,
        name='hidden_3x3')
    self.hidden_mid = keras.layers.Conv2D(
        width, 1, activation='relu', kernel_initializer=glorot(),
        dtype=self.dtype_policy, name='hidden_1x1')
    self.out = ZeroConv2D(out_channels, name='zero_3x3', dtype=self.dtype_policy)

  def build(self, input_shape):
    self.hidden_in.build(input_shape)
    hidden_shape = tuple(input_shape[:-1]) + (self.width,)
    self.hidden_mid.build(hidden_shape)
    self.out.build(hidden_shape)

  def call(self, x):
    return self.out(self.hidden_mid(self.hidden_in(x)))

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.out_channels,)

  def get_config(self):
    return dict(super().get_config(), out_channels=self.out_channels,
                width=self.width, seed=self.seed)
