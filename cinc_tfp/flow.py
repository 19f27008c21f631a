"""CIncFlow: Glow's multi-scale flow with CInC convolutions, as a Keras 3 model."""

import collections.abc
import math
import warnings

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp import bijectors
from cinc_tfp import config as config_lib
from cinc_tfp import layers
from cinc_tfp.bijectors import fused
from cinc_tfp.bijectors import init

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ['CIncFlow', 'bits_per_dim', 'finite_images']


# The methods a traced function calls run as written, not converted by
# AutoGraph: they branch on Python values only, and converting the library
# under them was 40% of tracing `sample` (4 of 10 s for the default model).
_as_written = tf.autograph.experimental.do_not_convert

# A batch of a size in this range is inverted (decoded, sampled) in a graph as
# two halves side by side: two independent chains of ops, which TensorFlow
# runs on a CPU's cores at once where one chain's small ops left a core
# idle. On 2 cores, sampling was a few percent faster (up to 13%) for CInC +
# affine and for Glow alike from 8 to 100 images; mixed at 4, level at 256
# (docs/performance.md). Not with a GPU, whose one stream would only run
# twice the ops.
SPLIT_BATCHES = range(8, 101)


def bits_per_dim(log_prob, num_dims, n_bits):
  """Bits per dimension of `n_bits` images whose dequantized density over
  `num_dims` dimensions is `log_prob` (nats): the discrete images' bits,
  the dequantization's correction included."""
  return n_bits - log_prob / (num_dims * math.log(2.))


@keras.saving.register_keras_serializable(package='cinc_tfp')
class CIncFlow(keras.Model):
  """A normalizing flow for images, trained by maximum likelihood with `fit`.

  Data to latent: `levels` times [squeeze, then `depth` steps of (ActNorm,
  invertible convolution, coupling)], with half the channels factored out
  under a learned conditional Gaussian after every level but the last, and a
  learned per-channel Gaussian at the top. The latent is a flat vector of
  `H*W*C` standard normals. `conv` picks the convolution ('cinc', 'emerging'
  or Glow's '1x1') and `coupling` the coupling ('quad' or 'affine'): Glow is
  `conv='1x1', coupling='affine'`.

  With `num_classes=K`, the flow is class-conditional (Glow's `ycond`): the
  top prior and every factored-out prior add a learned per-class offset
  (zero at the start) to their per-channel mean and log scale; the steps are
  shared by all classes. Then every method takes int labels in `0..K-1`
  (`[B]`, or a scalar for all), `fit` trains on `(images, labels)` pairs,
  and `classify(x)` gives `log p(y | x)` by Bayes' rule under a uniform
  class prior (or the `log_prior` given), whose accuracy `evaluate` reports.

  Inputs are dequantized images in `[-0.5, 0.5)` (see `cinc_tfp.data`), of
  shape `[B, H, W, C]`. `fit` minimizes bits per dimension of the discrete
  data, `-log p(x) / (H W C ln 2) + n_bits`, on training and validation data.
  Calling the model (`model(x)`, `predict`) gives `log_prob(x)`.

  Weights and computations share one dtype (float32 or float64): a
  triangular solve in float16 would not be exact, so mixed-precision policies
  are refused.
  """

  def __init__(self, image_shape, **options):
    """Builds the flow.

    Args:
      image_shape: `(H, W, C)`; `H` and `W` divisible by `2**levels`.
      **options: the model options of `config.FlowConfig` (`levels`,
        `depth`, `width`, `conv`, `coupling`, `kernel_size`, `scale`,
        `corner`, `reverse_channels`, `n_bits`, `seed`, `recompute`,
        `num_classes`; each documented there, with its default), and what
        `keras.Model` takes (e.g. `name`, `dtype`).
    """
    names = [field.name for field in config_lib.FlowConfig.options()]
    self.config = config_lib.FlowConfig(
        image_shape, **{name: options.pop(name) for name in names
                        if name in options})
    super().__init__(**options)
    if self.dtype_policy.compute_dtype != self.dtype_policy.variable_dtype:
      raise ValueError(
          f'CIncFlow: mixed precision ({self.dtype_policy.name}) is not '
          f'supported; use float32 or float64.')
    if self.dtype_policy.compute_dtype not in ('float32', 'float64'):
      raise ValueError(
          f'CIncFlow: dtype {self.dtype_policy.name} is not supported (its '
          f'inverse would not be exact); use float32 or float64.')
    for name in ['image_shape'] + names:
      setattr(self, name, getattr(self.config, name))
    height, width_px, channels = self.image_shape
    levels, depth, width = self.levels, self.depth, self.width
    conv, coupling, kernel_size = self.conv, self.coupling, self.kernel_size
    scale, corner = self.scale, self.corner
    self.num_dims = height * width_px * channels

    # Each layer's seed, from which its weights' seeds are drawn in turn.
    seeds = init.SeedStream(self.seed, salt='CIncFlow')
    self.steps, self.priors, self.level_shapes = [], [], []
    for level in range(levels):
      height, width_px, channels = height // 2, width_px // 2, channels * 4
      shape = (height, width_px, channels)
      self.level_shapes.append(shape)
      for step in range(depth):
        self.steps.append(layers.FlowStep(
            conv, coupling, shape, width, kernel_size,
            (bijectors.CORNERS[step % 4]
             if corner == config_lib.CORNER_CYCLE else corner),
            scale, seed=seeds(), reverse_channels=self.reverse_channels,
            dtype=self.dtype_policy, name=f'level{level}_step{step}'))
      if level < levels - 1:
        self.priors.append(layers.PriorLayer(
            shape, self.num_classes, dtype=self.dtype_policy,
            name=f'level{level}_prior'))
        channels //= 2
    self.top_shape = (height, width_px, channels)
    self.top_prior = layers.ActNormLayer(
        channels, data_init=False, num_classes=self.num_classes,
        dtype=self.dtype_policy, name='top_prior')
    layers.keep_by_name(self, self.steps + self.priors)
    self.bits_per_dim_tracker = keras.metrics.Mean(name='bits_per_dim')
    self.accuracy_tracker = (None if self.num_classes is None else
                             keras.metrics.Mean(name='accuracy'))
    self.build()

  @property
  def convs(self):
    """The invertible convolutions' layers, step after step."""
    return [step.conv for step in self.steps]

  @property
  def actnorms(self):
    """The ActNorms' layers, step after step."""
    return [step.actnorm for step in self.steps]

  @property
  def couplings(self):
    """The couplings' layers, step after step."""
    return [step.coupling for step in self.steps]

  def build(self, input_shape=None):
    # Every weight is created in __init__, with shapes fixed by image_shape:
    # nothing is left to infer from the data.
    del input_shape
    self.built = True

  def get_config(self):
    return dict(self.config.as_dict(), name=self.name,
                dtype=self.dtype_policy.name)

  @classmethod
  def from_config(cls, config):
    # A config written before `reverse_channels` existed describes a flow
    # without the reversal, whatever the default is now.
    return cls(**dict(dict(reverse_channels=False), **config))

  # The flow as TFP objects.

  def bijector(self, data_init=False, recompute=False, labels=None):
    """The data-to-latent bijector: images `[..., H, W, C]` to `[..., H*W*C]`.

    A `tfb.Chain` of this package's bijectors, built from the current
    weights. With `data_init`, its ActNorms initialize themselves from the
    first batch they transform (see `initialize`). With `recompute`, each
    level's steps are one `bijectors.Recompute`, whose `forward_and_log_det`
    is differentiated without storing the steps' activations (what
    `log_prob` uses when the model's `recompute` option is on). A
    class-conditional flow needs `labels` (ints, any shape): the priors then
    have their batch shape, which broadcasts against the images'.
    """
    if not data_init:  # Initialization ignores the priors.
      labels = self._check_labels(labels)
    return self._bijector(data_init, recompute, labels)

  def _bijector(self, data_init=False, recompute=False, labels=None,
                plans=None):
    """`bijector`, for `labels` checked already; `plans`: one per step, for
    its convolution's `bijector` (default: its own, checked at each
    inverse)."""
    plans = [True] * len(self.steps) if plans is None else plans
    height, width, channels = self.top_shape
    inner = tfb.Chain([
        tfb.Reshape([height * width * channels],
                    event_shape_in=[height, width, channels]),
        self.top_prior.bijector(labels=labels)
    ], name='top')
    for level in reversed(range(self.levels)):
      steps = [bijectors.Squeeze()]
      in_level = slice(level * self.depth, (level + 1) * self.depth)
      if recompute and not data_init:
        steps.append(bijectors.Recompute(
            [flow_step.chain for flow_step in self.steps[in_level]]))
      else:
        for flow_step, plan in zip(self.steps[in_level], plans[in_level]):
          steps += flow_step.bijectors(data_init, plan)
      if level < self.levels - 1:
        steps.append(self.priors[level].bijector(inner, labels))
      else:
        steps.append(inner)
      inner = tfb.Chain(list(reversed(steps)), name=f'level{level}')
    return inner

  def distribution(self, labels=None):
    """`tfd.TransformedDistribution` of the images under the current weights;
    of a class-conditional flow, given `labels` (its batch shape)."""
    labels = self._check_labels(labels)
    batch_shape = [] if labels is None else tf.shape(labels)
    base = tfd.Sample(
        tfd.Normal(tf.zeros(batch_shape, self.compute_dtype), 1.),
        [self.num_dims])
    return tfd.TransformedDistribution(
        base, tfb.Invert(self._bijector(labels=labels)))

  # Likelihood.

  def _check_images(self, x):
    x = tf.convert_to_tensor(x)
    if x.dtype.is_integer:
      raise ValueError(
          f'CIncFlow: expected dequantized float images in [-0.5, 0.5), got '
          f'{x.dtype.name} data; use cinc_tfp.data.dequantize or '
          f'cinc_tfp.data.pipeline.')
    if x.shape.rank != 4 or tuple(x.shape[1:]) != self.image_shape:
      raise ValueError(
          f'CIncFlow: expected a batch of images of shape [B, '
          f'{", ".join(map(str, self.image_shape))}], got {x.shape}.')
    # Checked before the cast: float64 data just below 0.5 rounds to 0.5 in
    # float32.
    return tf.cast(_check_range(_check_not_empty(x, 'images')),
                   self.compute_dtype)

  def _check_labels(self, labels, batch=None):
    """`labels` as int32, checked: none for an unconditional flow; ints in
    `0..num_classes-1` for a class-conditional one, a scalar or `[batch]`
    when `batch` (the images' count, an int or a scalar tensor) is given. A
    `ValueError`, or an `InvalidArgumentError` in a graph."""
    if self.num_classes is None:
      if labels is not None:
        raise ValueError('CIncFlow: this flow is unconditional '
                         '(num_classes=None); it takes no labels.')
      return None
    if labels is None:
      raise ValueError(
          f'CIncFlow: this flow is class-conditional (num_classes='
          f'{self.num_classes}); pass labels, one int class per image or one '
          f'for all.')
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
      raise ValueError(
          f'CIncFlow: labels must be int class indices in 0..'
          f'{self.num_classes - 1}, got {labels.dtype.name} values.')
    if batch is not None and (
        labels.shape.rank not in (0, 1) or
        (labels.shape.rank == 1 and None not in (labels.shape[0], batch) and
         not tf.is_tensor(batch) and labels.shape[0] != batch)):
      raise ValueError(
          f'CIncFlow: expected one label per image ([{batch}]) or one for '
          f'all ([]), got labels of shape {labels.shape}.')
    labels = tf.cast(labels, tf.int32)
    inside = tf.reduce_all((labels >= 0) & (labels < self.num_classes))
    message = (f'CIncFlow: labels must be in 0..{self.num_classes - 1} '
               f'(num_classes={self.num_classes})')
    if tf.executing_eagerly():
      if not bool(inside):
        raise ValueError(f'{message}, got {labels.numpy().tolist()}.')
      return labels
    checks = [tf.debugging.Assert(inside, [message + ', got', labels])]
    if batch is not None and labels.shape.rank == 1:
      checks.append(tf.debugging.assert_equal(
          tf.size(labels), tf.cast(batch, tf.int32),
          message='CIncFlow: expected one label per image or one for all'))
    with tf.control_dependencies(checks):
      return tf.identity(labels)

  @_as_written
  def encode_with_log_det(self, x, labels=None):
    """`(z, log|det dz/dx|)` for a batch of images, in one sweep (whose
    gradient recomputes the steps' activations when `recompute` is on)."""
    x = self._check_images(x)
    labels = self._check_labels(labels, _batch_size(x))
    return fused.forward_and_log_det(
        self._bijector(recompute=self.recompute, labels=labels), x)

  def _log_prob_of(self, z, log_det):
    """`log p(x)` from the latent `z` of `x` and the log-det of `x -> z`."""
    base = -0.5 * tf.reduce_sum(z**2, axis=-1) - 0.5 * self.num_dims * math.log(
        2. * math.pi)
    return base + log_det

  @_as_written
  def log_prob(self, x, labels=None):
    """Log-density of dequantized images `x` (`[B, H, W, C]`), in nats (of a
    class-conditional flow: `log p(x | labels)`)."""
    return self._log_prob_of(*self.encode_with_log_det(x, labels))

  def _bits(self, log_prob):
    return bits_per_dim(log_prob, self.num_dims, self.n_bits)

  @_as_written
  def bits_per_dim(self, x, labels=None):
    """Bits per dimension of the discrete images that `x` dequantizes."""
    return self._bits(self.log_prob(x, labels))

  @_as_written
  def class_log_likelihoods(self, x):
    """`[B, K]`: `log p(x | y)` of each image for every class `y`, from one
    pass through the flow's steps (only the priors differ between classes)."""
    if self.num_classes is None:
      raise ValueError('CIncFlow: an unconditional flow (num_classes=None) '
                       'has no classes.')
    x = self._check_images(x)
    every_class = tf.range(self.num_classes)[:, tf.newaxis]
    z, log_det = fused.forward_and_log_det(
        self._bijector(labels=every_class), x)
    return tf.transpose(self._log_prob_of(z, log_det))

  @_as_written
  def classify(self, x, log_prior=None):
    """`[B, K]`: `log p(y | x)` for every class `y`, by Bayes' rule from
    `log p(x | y) + log p(y)`; the class prior `log_prior` (`[K]`, log
    probabilities) is uniform unless given."""
    log_joint = self.class_log_likelihoods(x)
    if log_prior is not None:
      log_prior = tf.convert_to_tensor(log_prior, self.compute_dtype)
      if log_prior.shape != [self.num_classes]:
        raise ValueError(
            f'CIncFlow.classify: log_prior must have shape '
            f'[{self.num_classes}], got {log_prior.shape}.')
      log_joint += log_prior
    return tf.nn.log_softmax(log_joint, axis=-1)

  # Exact encoding, decoding and sampling.

  @_as_written
  def encode(self, x, labels=None):
    """Latent vectors `[B, H*W*C]` of images `x`."""
    x = self._check_images(x)
    labels = self._check_labels(labels, _batch_size(x))
    return self._bijector(labels=labels).forward(x)

  @_as_written
  def decode(self, z, labels=None):
    """Images of latent vectors `z` (`[B, H*W*C]`): the exact inverse."""
    z = _real_tensor(z, 'CIncFlow.decode: latent vectors must be real numbers')
    z = tf.cast(z, self.compute_dtype)
    if z.shape.rank != 2 or z.shape[-1] != self.num_dims:
      raise ValueError(
          f'CIncFlow: expected latent vectors of shape [B, {self.num_dims}], '
          f'got {z.shape}.')
    if z.shape[0] is not None:  # Else checked off the one-image path.
      z = _check_not_empty(z, 'latent vectors')
    labels = self._check_labels(labels, _batch_size(z))
    x = self._decode(z, labels)
    if tf.executing_eagerly():
      invalid = int(tf.reduce_sum(tf.cast(~finite_images(x), tf.int32)))
      if invalid:
        warnings.warn(
            f'CIncFlow.decode: {invalid} of {x.shape[0]} images are not '
            f'finite (the inverse overflowed for latents this far out); '
            f'finite_images(x) tells which.', RuntimeWarning, stacklevel=2)
    return x

  def _decode(self, z, labels):
    """The inverse, by the convolutions' cached `InversePlan`s while they
    hold. Eagerly, `InvertibleConvLayer.plans` has just made them current.
    In a graph they are those of the weights at trace time, as constants
    (`InversePlan.in_graph`; a SavedModel's too): the flow is inverted with
    them while, beside that inverse rather than before it, the weights of
    all layers are compared with theirs at once; only where some differ is
    the flow inverted again, with plans made from the weights' values.
    (When the comparison chose the plans, before the inverse, sampling one
    image took 4-8% longer: docs/performance.md.)"""
    planned = [step.conv for step in self.steps if step.conv.has_plans]
    inverse = lambda z, labels, plans: self._bijector(  # pylint: disable=g-long-lambda
        labels=labels, plans=plans).inverse(z)
    cached = self._step_plans([conv.plans() for conv in planned])
    if tf.executing_eagerly():
      return self._invert(inverse, z, labels, cached)
    # One trace of the inverse for every call (per plan structure and batch
    # size).
    inverse = tf.function(inverse, autograph=False)
    x = self._invert(inverse, z, labels, cached)
    if not planned:
      return x
    flat = lambda tensors: tf.concat([tf.reshape(t, [-1]) for t in tensors],  # pylint: disable=g-long-lambda
                                     axis=0)
    current = tf.reduce_all(tf.equal(
        flat([p for layer in cached if layer for plan in layer
              for p in plan.in_graph().parameters]),
        flat([w for conv in planned for w in conv.plan_weights()])))
    # The inverse by plans made afresh: one function call, left out of line
    # (`_noinline`) so that while the cached plans hold it costs nothing.
    replanned = _out_of_line(lambda: self._invert(
        inverse, z, labels,
        self._step_plans([conv.plans_of_weights() for conv in planned])))
    return tf.cond(current, lambda: tf.identity(x), replanned)

  def _step_plans(self, plans):
    """`plans` of the planned convolutions, spread over the steps: `False`
    for a step whose convolution has none."""
    plans = iter(plans)
    return [next(plans) if step.conv.has_plans else False
            for step in self.steps]

  def _invert(self, inverse, z, labels, plans):
    """`inverse(z, labels, plans)`, for `plans` of each step (see
    `_decode`), as tensors of the graph (`InversePlan.in_graph`), only those
    the batch size needs: one image is inverted with the plans for one
    image, whose layers invert it in one convolution each where they can
    (`InversePlan.one_image`). In a graph without a GPU, a batch of a size in
    `SPLIT_BATCHES` is inverted as two halves side by side (`_in_halves`). A
    batch of unknown size (a served function's) chooses among these in
    `tf.cond`s on its size, whose branches are calls left out of line
    (`_out_of_line`); the inverse is traced once for one image and once for
    any other batch."""
    adapted = lambda adapt: [layer and tuple(  # pylint: disable=g-long-lambda
        adapt(plan).in_graph() for plan in layer) for layer in plans]
    one_image = lambda z, labels: inverse(  # pylint: disable=g-long-lambda
        z, labels, adapted(lambda plan: plan.for_one_image()))
    batch = z.shape[0]

    def several():
      # A batch of unknown size is checked to hold images here, where a
      # batch of one image does not pay for it (1-2%, docs/performance.md).
      latents = z if batch is not None else _check_not_empty(
          z, 'latent vectors')
      any_batch = adapted(lambda plan: plan.for_any_batch())
      whole = lambda: inverse(latents, labels, any_batch)
      halves = lambda: _in_halves(inverse, latents, labels, any_batch)
      if tf.executing_eagerly() or tf.config.list_logical_devices('GPU'):
        return whole()
      if batch is not None:
        return halves() if batch in SPLIT_BATCHES else whole()
      size = tf.shape(latents)[0]
      return tf.cond(
          (size >= SPLIT_BATCHES.start) & (size < SPLIT_BATCHES.stop),
          _out_of_line(halves), _out_of_line(whole))

    if batch == 1:
      return one_image(z, labels)
    if batch is not None:
      return several()

    def pinned():
      # The batch pinned to one image, so that its inverse is traced with
      # every shape known: served `decode` of one image took 0.95-0.98x the
      # time it took with the batch left unknown. Inline, this branch would
      # be dead ops at every other batch size (what it gained at one image
      # was lost at 16; docs/performance.md).
      return one_image(_as_one_image(z), _as_one_image(labels))

    return tf.cond(tf.shape(z)[0] == 1, _out_of_line(pinned),
                   _out_of_line(several))

  @_as_written
  def sample(self, n, temperature=1.0, seed=None, labels=None):
    """`n` images; the base normal is scaled by `temperature` (Glow).

    `seed` is a non-negative int (Python, NumPy or a scalar tensor) or a
    `[2]` int stateless seed: the same seed gives the same images. `None`
    draws a fresh seed. `n` must be a positive int and `temperature` a
    finite number above 0 (a `ValueError`, or an `InvalidArgumentError` in a
    graph). A class-conditional flow samples the classes `labels`: `[n]`, or
    one for all.
    """
    return self.decode(self.sample_latents(n, temperature, seed), labels)

  @_as_written
  def sample_latents(self, n, temperature=1.0, seed=None):
    """The `[n, H*W*C]` latents that `sample` decodes: the base normal's,
    scaled by `temperature`; the arguments are `sample`'s."""
    n, temperature = _check_sample_arguments(n, temperature)
    z = tf.random.stateless_normal(tf.stack([n, self.num_dims]),
                                   init.stateless_seed(seed),
                                   dtype=self.compute_dtype)
    return z * tf.cast(temperature, self.compute_dtype)

  @_as_written
  def call(self, inputs):
    """`log_prob`: what `model(x)` and `predict` return; a class-conditional
    flow takes `(x, labels)`."""
    return self.log_prob(*self._images_and_labels(inputs, 'call'))

  # Training.

  @property
  def is_initialized(self):
    return bool(self.actnorms[0].initialized.numpy())

  def initialize(self, x):
    """Data-dependent ActNorm initialization from the batch `x`, once.

    Every ActNorm is set so that its input from `x` comes out with zero mean
    and unit variance per channel. Called by `fit` with the first batch when
    the model is not initialized yet (a restored model is); call it yourself
    before `fit` for inputs whose first batch `fit` cannot see in advance
    (see `_first_batch`).
    """
    if not self.is_initialized:
      fused.forward_and_log_det(self.bijector(data_init=True),
                                self._check_images(x))

  def fit(self, x=None, *args, **kwargs):  # pylint: disable=keyword-arg-before-vararg
    """Keras' `fit`, after `initialize` with the first batch of `x` when the
    model is not initialized yet.

    The one reason for the override: Keras 3 has no public hook that sees a
    batch before the first step, and an initialization inside the first
    `train_step` would assign mirrored variables from replica context inside
    a `tf.cond`, which `tf.distribute` refuses. Datasets, `PyDataset`s,
    iterators and generators (the first batch is trained on too) and arrays
    are taken; for anything else call `initialize` first.

    It also builds the optimizer first: Keras would build it while tracing
    the train step, and a traced function that creates variables is traced
    a second time, which doubled the time to the first step (21.7 s against
    9.3 s for the README's model on two cores).
    """
    if x is not None and not self.is_initialized:
      batch, x = _first_batch(x, kwargs.get('batch_size'))
      self.initialize(batch)
    # Before `compile` there is no `optimizer`: Keras' `fit` then says so.
    if getattr(self, 'optimizer', None) is not None and (
        not self.optimizer.built):
      with self.distribute_strategy.scope():
        self.optimizer.build(self.trainable_variables)
    return super().fit(x, *args, **kwargs)

  def compile(self, *args, jit_compile=False, **kwargs):
    """Keras' `compile`, where `jit_compile='auto'` means no XLA.

    Keras' 'auto' compiles the steps with XLA when a GPU is present, and XLA
    drops `tf.debugging.Assert`: the checks of the images' range and of the
    labels would not run. Pass `jit_compile=True` to train under XLA all the
    same (to the same weights; those checks then do not run).
    """
    super().compile(*args, jit_compile=jit_compile != 'auto' and jit_compile,
                    **kwargs)

  def compile_from_config(self, config):
    """Compiles a model loaded from a `.keras` file as it was saved, with its
    optimizer built so that its state is restored too. (Keras' own skips a
    model whose `compile` is overridden.)"""
    self.compile(**keras.saving.deserialize_keras_object(config))
    self.optimizer.build(self.trainable_variables)

  @property
  def metrics(self):
    if self.accuracy_tracker is None:
      return [self.bits_per_dim_tracker]
    return [self.bits_per_dim_tracker, self.accuracy_tracker]

  def _images_and_labels(self, data, method):
    """`(x, labels)` of a batch: `(x, labels, ...)` for a class-conditional
    flow; `x` or `(x, ...)` (anything after `x` ignored) otherwise."""
    pair = isinstance(data, (tuple, list))
    if self.num_classes is None:
      return (data[0] if pair else data), None
    if not pair or len(data) < 2 or data[1] is None:
      raise ValueError(
          f'CIncFlow.{method}: a class-conditional flow (num_classes='
          f'{self.num_classes}) takes (images, labels) pairs, got images '
          f'alone.')
    return data[0], data[1]

  @_as_written
  def train_step(self, data):
    x, labels = self._images_and_labels(data, 'fit')
    with tf.GradientTape() as tape:
      bits = tf.reduce_mean(self.bits_per_dim(x, labels))
      # Keras sums gradients over replicas: scale each replica's share.
      loss = bits / tf.distribute.get_strategy().num_replicas_in_sync
    gradients = tape.gradient(loss, self.trainable_variables)
    self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
    self.bits_per_dim_tracker.update_state(bits)
    return {'bits_per_dim': _log(self.bits_per_dim_tracker.result())}

  @_as_written
  def predict_step(self, data):
    """`log_prob` of a batch, taken as `fit` and `evaluate` take it (Keras'
    own step would drop a dataset's labels)."""
    # Arrays given as `x=(images, labels)` come in a 1-tuple, and Keras'
    # multi-input form `((images, labels), y)` with a target to drop.
    while isinstance(data, (tuple, list)) and (
        len(data) == 1 or isinstance(data[0], (tuple, list))):
      data = data[0]
    return self.log_prob(*self._images_and_labels(data, 'predict'))

  @_as_written
  def test_step(self, data):
    x, labels = self._images_and_labels(data, 'evaluate')
    if labels is None:
      self.bits_per_dim_tracker.update_state(
          tf.reduce_mean(self.bits_per_dim(x)))
      return {'bits_per_dim': _log(self.bits_per_dim_tracker.result())}
    labels = self._check_labels(labels, _batch_size(x))
    log_likelihoods = self.class_log_likelihoods(x)
    labels = tf.broadcast_to(labels, tf.shape(log_likelihoods)[:1])
    log_prob = tf.gather(log_likelihoods, labels, axis=1, batch_dims=1)
    correct = tf.argmax(log_likelihoods, axis=-1, output_type=tf.int32) == labels
    self.bits_per_dim_tracker.update_state(tf.reduce_mean(self._bits(log_prob)))
    self.accuracy_tracker.update_state(tf.cast(correct, self.compute_dtype))
    return {'bits_per_dim': _log(self.bits_per_dim_tracker.result()),
            'accuracy': _log(self.accuracy_tracker.result())}


def _out_of_line(function):
  """`function` (of no arguments) as one function call that TensorFlow does
  not inline: as a branch of a `tf.cond` not taken, one node, not a whole
  inverse that the executor walks as dead ops."""
  return tf.function(function, autograph=False,
                     experimental_attributes={'_noinline': True})


def _in_halves(inverse, z, labels, plans):
  """`inverse(z, labels, plans)` as two independent calls on the first and
  second half of the batch, concatenated: two chains of ops that
  TensorFlow runs side by side on a CPU's cores. Halves of unequal size are
  given an unknown batch size, so that both take one trace of `inverse`."""
  batch = z.shape[0]
  if batch is None:
    batch = tf.shape(z)[0]
    sizes = tf.stack([batch // 2, batch - batch // 2])
  else:
    sizes = [batch // 2, batch - batch // 2]
  per_image = labels is not None and labels.shape.rank == 1
  parts = zip(tf.split(z, sizes),
              tf.split(labels, sizes) if per_image else [labels] * 2)
  if isinstance(batch, int) and batch % 2:
    parts = [tuple(_of_any_batch(t) for t in part) for part in parts]
  return tf.concat([inverse(z, labels, plans) for z, labels in parts], axis=0)


def _of_any_batch(tensor):
  """`tensor` (or None) with its first dimension unknown to the graph."""
  if tensor is None or tensor.shape.rank == 0:
    return tensor
  return tf.raw_ops.PlaceholderWithDefault(
      input=tensor, shape=[None] + tensor.shape[1:])


def _as_one_image(tensor):
  """The first entry of a batch `tensor` (or None, or a scalar, as it is)
  as a batch of one whose size the graph knows, for a batch of any size:
  XLA compiles both branches of a `tf.cond` for the batch it is given, an
  empty one too (whose entry is zeros)."""
  if tensor is None or tensor.shape.rank == 0:
    return tensor
  shape = [1] + tensor.shape[1:]
  padded = tf.concat([tensor[:1], tf.zeros(shape, tensor.dtype)], axis=0)
  return tf.reshape(padded[:1], shape)


def _batch_size(x):
  """The leading dimension of `x`: static if known, else a scalar tensor."""
  return x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]


def finite_images(x):
  """`[B]` bool: which images of the batch `x` are finite everywhere (what
  `decode` and `sample` give unless their inverse overflowed)."""
  return tf.reduce_all(tf.math.is_finite(x), axis=[1, 2, 3])


_RANGE_MESSAGE = (
    'CIncFlow: expected dequantized images with every value in [-0.5, 0.5) '
    '(cinc_tfp.data.dequantize); got values outside it or NaN (images on the '
    '0..255 or 0..1 scale?)')


def _check_not_empty(x, what):
  """`x`, checked to hold at least one image or vector (TensorFlow's oneDNN
  convolution gives an empty batch a wrong shape): a `ValueError` when the
  batch size is known, an `InvalidArgumentError` in a graph otherwise (not
  under XLA, which drops the check and inverts an empty batch)."""
  message = f'CIncFlow: got an empty batch of {what}; pass at least one'
  if x.shape[0] is not None:
    if x.shape[0] == 0:
      raise ValueError(message + '.')
    return x
  check = tf.debugging.Assert(tf.shape(x)[0] > 0, [message])
  with tf.control_dependencies([check]):
    return tf.identity(x)


def _check_range(x):
  """`x`, checked to lie in `[-0.5, 0.5)` with no NaN: a `ValueError` when
  eager, an `InvalidArgumentError` with the same message in a graph (a
  SavedModel)."""
  inside = tf.reduce_all((x >= -0.5) & (x < 0.5))
  if tf.executing_eagerly():
    if not bool(inside):
      raise ValueError(
          f'{_RANGE_MESSAGE}: min {float(tf.reduce_min(x))}, max '
          f'{float(tf.reduce_max(x))}.')
    return x
  check = tf.debugging.Assert(
      inside, [_RANGE_MESSAGE + ': min', tf.reduce_min(x), 'max',
               tf.reduce_max(x)])
  with tf.control_dependencies([check]):
    return tf.identity(x)


def _real_tensor(value, requirement):
  """`value` as a tensor of ints or floats; for anything else (strings,
  bools) a `ValueError` that states `requirement`."""
  try:
    tensor = tf.convert_to_tensor(value)
  except (TypeError, ValueError) as error:
    raise ValueError(f'{requirement}, got {value!r}.') from error
  if not (tensor.dtype.is_floating or tensor.dtype.is_integer):
    raise ValueError(f'{requirement}, got {tensor.dtype.name} values.')
  return tensor


def _check_sample_arguments(n, temperature):
  """`(n, temperature)` as tensors, checked: `n >= 1`, `temperature` finite
  and `> 0`."""
  n = tf.convert_to_tensor(n)
  if not n.dtype.is_integer or n.shape.rank != 0:
    raise ValueError(f'CIncFlow.sample: n must be an int, got {n!r}.')
  requirement = 'CIncFlow.sample: temperature must be a number'
  temperature = _real_tensor(temperature, requirement)
  if temperature.shape.rank != 0:
    raise ValueError(f'{requirement}, got shape {temperature.shape}.')
  temperature = tf.cast(temperature, tf.float64)
  n_ok = n >= 1
  t_ok = tf.math.is_finite(temperature) & (temperature > 0.)
  if tf.executing_eagerly():
    if not bool(n_ok):
      raise ValueError(
          f'CIncFlow.sample: n must be 1 or more, got {int(n)}.')
    if not bool(t_ok):
      raise ValueError(f'CIncFlow.sample: temperature must be a finite '
                       f'number above 0, got {float(temperature)}.')
    return n, temperature
  checks = [
      tf.debugging.Assert(n_ok, ['CIncFlow.sample: n must be 1 or more, got',
                                 n]),
      tf.debugging.Assert(t_ok, ['CIncFlow.sample: temperature must be a '
                                 'finite number above 0, got', temperature]),
  ]
  with tf.control_dependencies(checks):
    return tf.identity(n), tf.identity(temperature)


def _log(value):
  """A logged scalar, made rank 1 under multi-worker strategies.

  Keras reduces logs along axis 0 across workers, which fails for scalars
  (TensorFlow issue #72388); its TensorBoard callback wants scalars elsewhere.
  """
  if not tf.distribute.has_strategy():
    return value
  strategy = tf.distribute.get_strategy()
  if strategy.num_replicas_in_sync > len(strategy.extended.worker_devices):
    return tf.reshape(value, [1])
  return value


def _prepend(first, rest):
  """A generator of `first`, then of what `rest` yields (Keras' `fit` takes
  generators, not other iterators)."""
  yield first
  yield from rest


def _first_batch(x, batch_size):
  """`(first batch, x)`: the first batch `fit` will see, for data-dependent
  initialization, and what to pass on to Keras' `fit` (an iterator gets its
  first element back)."""
  if isinstance(x, tf.data.Dataset):
    batch = next(iter(x))
  elif isinstance(x, keras.utils.PyDataset):
    batch = x[0]
  elif isinstance(x, collections.abc.Iterator):
    batch = next(x)
    x = _prepend(batch, x)
  elif hasattr(x, '__getitem__') and hasattr(x, 'shape'):
    batch = x[:batch_size or 32]
  else:
    raise TypeError(
        f'CIncFlow.fit: cannot take the first batch of a {type(x).__name__} '
        'for the ActNorms\' data-dependent initialization; call '
        'model.initialize(first_batch) before fit.')
  return (batch[0] if isinstance(batch, (tuple, list)) else batch), x
