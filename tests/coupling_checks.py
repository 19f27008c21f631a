"""Keras networks with non-trivial weights, for testing coupling layers."""

import keras

from cinc_tfp import nets


def random_network(out_channels, in_channels, dtype, seed, width=8):
  """A `CouplingNetwork` whose zero-initialized output layer is randomized."""
  network = nets.CouplingNetwork(out_channels, width, dtype=dtype)
  network.build((None, None, None, in_channels))
  generator = keras.random.SeedGenerator(seed)
  for weight in network.weights:
    weight.assign(0.3 * keras.random.normal(weight.shape, seed=generator,
                                            dtype=dtype))
  return network


class CountingNetwork:
  """Wraps a network and counts its calls."""

  def __init__(self, network):
    self.network = network
    self.calls = 0

  def __call__(self, x):
    self.calls += 1
    return self.network(x)
