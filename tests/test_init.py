"""bijectors.init: the starting parameters of every parametrization, seeded."""

import numpy as np
import pytest
import tensorflow as tf

from cinc_tfp import bijectors
from cinc_tfp.bijectors import init

INITS = {
    'cinc': (init.cinc_conv, bijectors.CIncConv2D),
    'emerging': (init.emerging_conv, bijectors.EmergingConv2D),
    'conv1x1': (init.conv1x1, bijectors.Conv1x1),
}


@pytest.mark.parametrize('kind', sorted(INITS))
def test_the_same_seed_gives_the_same_parameters_every_call(kind):
  make, bijector = INITS[kind]
  first, again = make(4, seed=3), make(4, seed=3)
  other = make(4, seed=4)
  for name, value in first.items():
    np.testing.assert_array_equal(value, again[name])
  random = [name for name, value in first.items()
            if np.std(value.numpy()) > 0 and name not in init.FIXED]
  assert random and all(not np.array_equal(first[name], other[name])
                        for name in random)
  # The stateless `[2]` seed form, and the keyword arguments of the bijector.
  np.testing.assert_array_equal(
      bijector(**make(4, seed=[7, 8])).forward(tf.ones([1, 3, 3, 4])),
      bijector(**make(4, seed=[7, 8])).forward(tf.ones([1, 3, 3, 4])))


def test_emerging_kernels_come_from_two_halves_of_one_seed():
  parameters = init.emerging_conv(3, seed=0)
  assert not np.allclose(parameters['kernel_a'], parameters['kernel_b'])


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_dtypes_and_options(dtype):
  assert {value.dtype for value in init.cinc_conv(2, dtype=dtype).values()} == {
      dtype}
  assert sorted(init.cinc_conv(2, 5, volume_preserving=True,
                               use_bias=False)) == ['kernel']
  assert init.cinc_conv(2, 5)['kernel'].shape == [5, 5, 2, 2]
  assert sorted(init.emerging_conv(2, use_bias=False)) == [
      'kernel_a', 'kernel_b', 'log_diag']
  conv1x1 = init.conv1x1(3, dtype=dtype)
  assert conv1x1['permutation'].dtype == tf.int32
  assert conv1x1['lower_upper'].dtype == dtype


def test_actnorm_from_data_normalizes_each_channel():
  x = tf.constant(np.random.default_rng(0).normal(3., 2., [64, 4, 4, 3]),
                  tf.float32)
  actnorm = bijectors.ActNorm(**init.actnorm_from_data(x))
  y = actnorm.forward(x)
  np.testing.assert_allclose(tf.reduce_mean(y, [0, 1, 2]), 0., atol=1e-5)
  np.testing.assert_allclose(tf.math.reduce_std(y, [0, 1, 2]), 1., rtol=1e-4)
  np.testing.assert_array_equal(init.actnorm(3)['log_scale'], 0.)


def test_variables_are_trainable_except_the_fixed_parameters():
  made = init.variables(init.conv1x1(3, seed=0))
  assert sorted(name for name, value in made.items()
                if isinstance(value, tf.Variable)) == [
                    'log_scale', 'lower_upper']
  assert len(bijectors.Conv1x1(**made).trainable_variables) == 2


def test_stateless_seeds():
  np.testing.assert_array_equal(init.stateless_seed(5), [5, 0])
  np.testing.assert_array_equal(init.stateless_seed(2**40 + 3),
                                [3, 2**9])
  np.testing.assert_array_equal(init.stateless_seed(tf.constant(2**40 + 3)),
                                [3, 2**9])
  np.testing.assert_array_equal(init.stateless_seed([1, 2]), [1, 2])
  salted = [init.stateless_seed(5, salt) for salt in ('a', 'a', 'b')]
  np.testing.assert_array_equal(salted[0], salted[1])
  assert not np.array_equal(salted[0], salted[2])
  assert not np.array_equal(init.stateless_seed(None),
                            init.stateless_seed(None))
  with pytest.raises(ValueError, match=r'seed must be in \[0, 2\*\*62\)'):
    init.stateless_seed(-1)
  for seed in (1.5, -1.0, True, 'a', [1, 2, 3], [[1, 2]], np.float64(2),
               tf.constant(-1), tf.constant(2.)):
    with pytest.raises(ValueError, match=r'seed must be an int in \[0, '):
      init.stateless_seed(seed)


def test_seed_stream_gives_distinct_ints_for_keras():
  seeds = init.SeedStream(0, 'test')
  drawn = [seeds() for _ in range(1000)]
  assert len(set(drawn)) == 1000 and all(0 <= s < 2**31 for s in drawn)
  again = init.SeedStream(0, 'test')
  assert [again() for _ in range(3)] == drawn[:3]


@pytest.mark.parametrize('channels', [0, -1, 2.0, True, None])
def test_bad_sizes_are_a_clear_error(channels):
  for make, _ in INITS.values():
    with pytest.raises(ValueError, match='channels must be a positive int'):
      make(channels)
  with pytest.raises(ValueError, match='channels must be a positive int'):
    init.actnorm(channels)
