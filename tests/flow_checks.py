"""A tiny CIncFlow away from its trivial start, for the flow tests."""

import tensorflow as tf

import cinc_tfp

IMAGE_SHAPE = (8, 8, 3)


def tiny_flow(conv='cinc', coupling='quad', dtype='float32', **kwargs):
  """A flow at 8x8x3, initialized on data and moved off its trivial start."""
  model = cinc_tfp.CIncFlow(IMAGE_SHAPE, levels=2, depth=2, width=8, conv=conv,
                            coupling=coupling, dtype=dtype, **kwargs)
  x = tf.random.stateless_uniform((16,) + IMAGE_SHAPE, [0, 1], -0.5, 0.5,
                                  dtype=dtype)
  model.initialize(x)
  generator = tf.random.Generator.from_seed(2)
  for variable in model.trainable_variables:
    variable.assign_add(0.05 * generator.normal(variable.shape, dtype=dtype))
  return model
