"""Conditioning networks: Glow's zero start, seeded weights, Keras config."""

import numpy as np
import tensorflow as tf

from cinc_tfp import nets


def test_coupling_network_starts_at_zero_with_seeded_hidden_layers():
  network = nets.CouplingNetwork(6, width=8, seed=3)
  x = tf.random.stateless_normal([2, 5, 4, 3], [0, 1])
  y = network(x)
  assert y.shape == (2, 5, 4, 6)
  np.testing.assert_array_equal(y, 0.)
  again = nets.CouplingNetwork(6, width=8, seed=3)
  again.build(x.shape)
  other = nets.CouplingNetwork(6, width=8, seed=4)
  other.build(x.shape)
  np.testing.assert_array_equal(again.hidden_in.kernel, network.hidden_in.kernel)
  assert not np.array_equal(other.hidden_in.kernel, network.hidden_in.kernel)
  # The hidden layers are not degenerate: the output moves once the last
  # layer does.
  network.out.kernel.assign(tf.ones_like(network.out.kernel))
  assert np.abs(network(x).numpy()).min() > 0.


def test_coupling_network_is_3x3_relu_1x1_relu_3x3():
  network = nets.CouplingNetwork(6, width=8, seed=3)
  x = tf.random.stateless_normal([2, 5, 4, 3], [0, 1])
  network.build(x.shape)
  for layer, seed in ((network.hidden_in, 1), (network.hidden_mid, 2),
                      (network.out, 3)):
    for weight in (layer.kernel, layer.bias):
      weight.assign(tf.random.stateless_normal(weight.shape, [seed, 0]))
  assert network.hidden_in.kernel.shape == (3, 3, 3, 8)
  assert network.hidden_mid.kernel.shape == (1, 1, 8, 8)
  assert network.out.kernel.shape == (3, 3, 8, 6)

  def conv(h, layer):
    return tf.nn.conv2d(h, layer.kernel, 1, 'SAME') + layer.bias

  hidden = tf.nn.relu(conv(x, network.hidden_in))
  hidden = tf.nn.relu(conv(hidden, network.hidden_mid))
  np.testing.assert_allclose(network(x), conv(hidden, network.out),
                             rtol=1e-5, atol=1e-5)


def test_coupling_network_config_round_trip():
  network = nets.CouplingNetwork(4, width=16, seed=1, name='net')
  clone = nets.CouplingNetwork.from_config(network.get_config())
  assert (clone.out_channels, clone.width, clone.seed, clone.name) == (
      4, 16, 1, 'net')
  assert clone.compute_output_shape((None, 3, 3, 2)) == (None, 3, 3, 4)


def test_zero_conv_is_a_3x3_same_convolution_starting_at_zero():
  conv = nets.ZeroConv2D(5)
  x = tf.random.stateless_normal([1, 4, 6, 2], [2, 3])
  np.testing.assert_array_equal(conv(x), np.zeros([1, 4, 6, 5]))
  assert conv.kernel.shape == (3, 3, 2, 5)
