"""Keras 3 layers that own the weights of the bijectors of a flow.

Keras 3 only trains weights it tracks, and a TFP bijector built once from a
Keras variable would freeze it. So each layer here holds its weights (created
with `add_weight`) and builds its bijector afresh on demand from the
underlying `tf.Variable`s: a cheap Python object, rebuilt at every call.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp import bijectors
from cinc_tfp import config
from cinc_tfp import nets
from cinc_tfp.bijectors import init


def _value(weight):
  """A fresh read of a Keras weight: gradients flow to the variable, and TFP's
  cache (keyed on parameters) never mixes up values from before and after an
  update."""
  return tf.convert_to_tensor(weight.value)


def keep_by_name(owner, sublayers):
  """Makes each of `sublayers` (kept in a list by `owner`) an attribute of
  `owner` named after it as well: Keras 3 tracks layers held in lists, but
  `tf.train.Checkpoint` does not follow those lists, only attributes."""
  for layer in sublayers:
    setattr(owner, layer.name, layer)


def _add_weights(layer, parameters):
  """Adds each initial parameter (`bijectors.init`) to `layer` as a weight,
  an attribute of the same name; the `init.FIXED` ones untrainable (saved
  with the model only so that it restores exactly)."""
  for name, value in parameters.items():
    setattr(layer, name, layer.add_weight(
        shape=value.shape, dtype=value.dtype.name,
        initializer=lambda shape, dtype, value=value: tf.cast(value, dtype),
        trainable=name not in init.FIXED, name=name))
  return tuple(parameters)


def _class_offsets(num_classes, size, dtype_policy):
  """A learned `[num_classes, size]` table of per-class offsets, zero at the
  start (Glow's linear map of the one-hot class, as a lookup), or `None`."""
  if num_classes is None:
    return None
  table = keras.layers.Embedding(num_classes, size,
                                 embeddings_initializer='zeros',
                                 dtype=dtype_policy, name='class_offsets')
  table.build()
  return table


class ActNormLayer(keras.layers.Layer):
  """Weights of an `ActNorm` (data-initialized) or of a learned Gaussian
  prior with per-channel mean and scale (`data_init=False`, zero start), and
  with `num_classes`, per-class offsets of that prior's log scale and bias."""

  def __init__(self, channels, data_init=True, num_classes=None, **kwargs):
    super().__init__(**kwargs)
    self.channels = channels
    self.data_init = data_init
    _add_weights(self, init.actnorm(channels, self.variable_dtype))
    if data_init:
      self.initialized = self.add_weight(
          shape=(), initializer='zeros', dtype='bool', trainable=False,
          name='initialized')
    with keras.name_scope(self.name):  # See CouplingLayer.
      self.class_offsets = _class_offsets(num_classes, 2 * channels,
                                          self.dtype_policy)
    self.built = True  # every weight exists, with its final shape

  def bijector(self, data_init=False, labels=None):
    """The `ActNorm`; with `data_init`, it initializes its weights from the
    first batch it transforms (once: the flag is saved with the weights).
    With `labels` (int, `[...]`), the class-conditional prior of each label:
    an `ActNorm` of batch shape `labels.shape`."""
    if data_init and self.data_init:
      return bijectors.ActNorm(self.log_scale.value, self.bias.value,
                               initialized=self.initialized.value)
    log_scale, bias = _value(self.log_scale), _value(self.bias)
    if labels is not None:
      log_scale_offset, bias_offset = tf.split(self.class_offsets(labels), 2,
                                               axis=-1)
      log_scale, bias = log_scale + log_scale_offset, bias + bias_offset
    return bijectors.ActNorm(log_scale, bias)


class _PlanCache:
  """The latest `InversePlan`s of a layer (an untracked attribute: they are
  derived from the weights, never saved with them)."""

  def __init__(self):
    self.plans = None


class InvertibleConvLayer(keras.layers.Layer):
  """Weights of a `CIncConv2D`, `EmergingConv2D` or `Conv1x1`, initialized
  by `bijectors.init` from `seed`; with `reverse_channels`, a convolution
  whose output's channels come in reverse order (no weights of its own).

  Given the `image_size` (`(H, W)`) it transforms, a CInC or Emerging layer
  also keeps the `InversePlan`(s) of its latest weights, for its bijectors'
  inverses.
  """

  def __init__(self, kind, channels, kernel_size=3, corner='top_left', seed=0,
               image_size=None, reverse_channels=False, **kwargs):
    super().__init__(**kwargs)
    if kind not in config.CONVS:
      raise ValueError(f'conv must be one of {config.CONVS}, got {kind!r}.')
    self.kind = kind
    self.corner = corner
    self.reverse_channels = reverse_channels
    self.seed = seed
    self.image_size = (None if image_size is None or kind == '1x1' else
                       tuple(image_size))
    self._plan_cache = _PlanCache()
    dtype = self.variable_dtype
    initial = {
        'cinc': lambda: init.cinc_conv(channels, kernel_size, seed, dtype),
        'emerging': lambda: init.emerging_conv(channels, seed, dtype),
        '1x1': lambda: init.conv1x1(channels, seed, dtype),
    }[kind]()
    self._parameter_names = _add_weights(self, initial)
    self.built = True  # every weight exists, with its final shape

  def bijector(self, plan=True):
    """The convolution from the current weights.

    Args:
      plan: `True`: its inverse uses the weights' `InversePlan` while they
        keep their values, else the plain solve (as `encode`, `log_prob`
        and `distribution()` build it); `False`: the plain solve (for an
        inverse inside training, where they change at every step); or plans
        (`plans()`'s structure) known to be those of the current weights,
        used unchecked (as decoding and sampling do).
    """
    if not self.has_plans or plan is False:
      return self._bijector()
    if plan is True:
      return self._bijector(inverse_plan=self._plan)
    return self._bijector(inverse_plan=plan[0] if self.kind == 'cinc' else plan,
                          check_plan=False)

  def _bijector(self, **plan_arguments):
    parameters = {name: _value(getattr(self, name))
                  for name in self._parameter_names}
    parameters['reverse_channels'] = self.reverse_channels
    if self.kind == 'cinc':
      return bijectors.CIncConv2D(**parameters, corner=self.corner,
                                  **plan_arguments)
    if self.kind == 'emerging':
      return bijectors.EmergingConv2D(**parameters, **plan_arguments)
    return bijectors.Conv1x1(**parameters)

  @property
  def has_plans(self):
    """Whether its inverse can use `InversePlan`s (CInC and Emerging
    layers given their image width)."""
    return self.image_size is not None

  def plan_weights(self):
    """The tensors its plans are made from, in the order of `plans()`'s
    parameters (so that the weights equal the plans' while each of these
    equals its counterpart)."""
    return self._bijector().plan_parameters()

  def plans_of_weights(self):
    """Plans made from the weights' values when it runs (in a graph: at
    every call), as `plans()` structures them."""
    height, width = self.image_size
    plans = self._bijector().plan_inverse(width, height)
    return (plans,) if self.kind == 'cinc' else plans

  def _plan(self):
    """The `InversePlan` (a pair for Emerging) of the weights' current
    values, read eagerly even while a function is traced (which then holds
    the plan as a constant, used only while the weights keep those values);
    computed again only when they changed."""
    plans = self.plans()
    return plans[0] if self.kind == 'cinc' else plans

  def plans(self):
    """The cached plans of the weights (a tuple: one per factor), read
    eagerly even while a function is traced, and made again if the weights
    changed since."""
    with tf.init_scope():
      plans = self._plan_cache.plans
      made_from = [weight for plan in plans or () for weight in plan.parameters]
      if plans is None or not all(
          np.array_equal(old, new)
          for old, new in zip(made_from, self.plan_weights())):
        self._plan_cache.plans = self.plans_of_weights()
      return self._plan_cache.plans


class CouplingLayer(keras.layers.Layer):
  """Networks of a `QuadCoupling` or an `AffineCoupling`, each seeded by a
  draw from `seed`."""

  def __init__(self, kind, image_shape, width, scale='sigmoid', seed=0,
               **kwargs):
    super().__init__(**kwargs)
    if kind not in config.COUPLINGS:
      raise ValueError(
          f'coupling must be one of {config.COUPLINGS}, got {kind!r}.')
    height, width_px, channels = image_shape
    blocks = 4 if kind == 'quad' else 2
    if channels % blocks:
      raise ValueError(
          f'{kind} coupling splits channels into {blocks} equal blocks: got '
          f'{channels} channels.')
    self.kind = kind
    self.scale = scale
    block = channels // blocks
    seeds = init.SeedStream(seed, 'CouplingLayer')
    self.networks = []
    # In this layer's scope, so that weight paths name the layer.
    with keras.name_scope(self.name):
      for i in range(1, blocks):
        network = nets.CouplingNetwork(
            2 * block, width, seed=seeds(), dtype=self.dtype_policy,
            name=f'network_{i}')
        network.build((None, height, width_px, i * block))
        self.networks.append(network)
    keep_by_name(self, self.networks)
    self.built = True  # every weight exists, with its final shape

  def bijector(self):
    if self.kind == 'quad':
      return bijectors.QuadCoupling(self.networks, scale=self.scale)
    return bijectors.AffineCoupling(self.networks[0], scale=self.scale)


class FlowStep(keras.layers.Layer):
  """One step of a flow: the weights of its ActNorm, its invertible
  convolution (`conv` of `config.CONVS`) and its coupling, each layer's
  seed drawn from `seed`; with `reverse_channels`, the channels reversed
  between the convolution and the coupling (folded into the convolution,
  see `CIncConv2D`)."""

  def __init__(self, conv, coupling, image_shape, width, kernel_size=3,
               corner='top_left', scale='sigmoid', seed=0,
               reverse_channels=False, **kwargs):
    super().__init__(**kwargs)
    channels = image_shape[-1]
    seeds = init.SeedStream(seed, 'FlowStep')
    with keras.name_scope(self.name):  # See CouplingLayer.
      self.actnorm = ActNormLayer(channels, dtype=self.dtype_policy,
                                  name='actnorm')
      self.conv = InvertibleConvLayer(
          conv, channels, kernel_size, corner, seed=seeds(),
          image_size=image_shape[:2], reverse_channels=reverse_channels,
          dtype=self.dtype_policy, name=conv)
      self.coupling = CouplingLayer(coupling, image_shape, width, scale,
                                    seed=seeds(), dtype=self.dtype_policy,
                                    name=coupling)
    self.built = True  # every weight exists, with its final shape

  def bijectors(self, data_init=False, plan=True):
    """The step's bijectors in data-to-latent order (ActNorm, convolution,
    coupling), from the current weights; see `ActNormLayer.bijector` for
    `data_init` and `InvertibleConvLayer.bijector` for `plan`."""
    return [self.actnorm.bijector(data_init), self.conv.bijector(plan),
            self.coupling.bijector()]

  def chain(self):
    """The step as one `tfb.Chain`, for an inverse inside training (the
    convolution's plain solve: see `InvertibleConvLayer.bijector`)."""
    return tfp.bijectors.Chain(self.bijectors(plan=False)[::-1])


class PriorLayer(keras.layers.Layer):
  """The network of a `FactorOut`'s conditional Gaussian prior, and with
  `num_classes`, per-class offsets of its outputs (mean and raw log scale)."""

  def __init__(self, image_shape, num_classes=None, **kwargs):
    super().__init__(**kwargs)
    height, width, channels = image_shape
    self.image_shape = tuple(image_shape)
    with keras.name_scope(self.name):  # See CouplingLayer.
      self.network = nets.ZeroConv2D(channels, dtype=self.dtype_policy,
                                     name='prior')
      self.network.build((None, height, width, channels // 2))
      self.class_offsets = _class_offsets(num_classes, channels,
                                          self.dtype_policy)
    self.built = True  # every weight exists, with its final shape

  def bijector(self, inner, labels=None):
    """The `FactorOut` into `inner`; with `labels` (int, `[...]`), each
    label's class-conditional prior (a batch of `labels.shape`)."""
    condition = None if labels is None else self.class_offsets(labels)
    return bijectors.FactorOut(self.network, inner, self.image_shape,
                               condition=condition)
