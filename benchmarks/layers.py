"""The `layers` benchmark: the invertible image layers, side by side.

For each batch size and image shape HxWxC it times CInC (3x3) forward and
inverse (by the row-wise solver, computing its matrices or with an
`InversePlan`, and by the pixel-by-pixel raster reference, the sequential
solver of the papers, in TensorFlow ops and compiled by numba as
`pixel_loop`), Emerging forward and inverse, and the 1x1 convolution forward
and inverse (this package's, and TFP's `tfb.ScaleMatvecLU` holding the same
LU factors), and ActNorm's forward with its log-det (this package's, and
TFP's `tfb.Scale` after `tfb.Shift` with the same parameters), each
TensorFlow one compiled once with `tf.function` (XLA with `jit`). Each is
timed per call from Python, so a TensorFlow call's fixed cost is in its
time, as numba's much smaller one is in the pixel loop's. Two rows show
that cost: `TF call` (a traced call that only sums its input) and `CInC inv
(plan) in a graph`, one layer's share of `GRAPH_LAYERS` planned inverses of
different layers in one call, as a flow's decode runs them. Each timing is
the median over `repeats` interleaved calls after a warm-up call
(`harness.median_ms`). The report has a table of
timings and one of ratios per batch size; the targets the ratios are held
to are in the README.
"""

import functools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from cinc_tfp import bijectors
from cinc_tfp.bijectors import init

from . import harness
from . import pixel_loop

# (name, bijector key, direction); 'inverse_reference' is the pixel-by-pixel
# raster inverse, the sequential solver the CInC and Emerging papers used.
# 'planned_inverse' is the inverse with the layer's `InversePlan` (matrices
# computed once, as a flow's decode and a SavedModel use it); 'pixel_loop'
# the same raster algorithm compiled by numba (`pixel_loop`), float64.
# 'planned_inverse_in_graph' is one layer's share of `GRAPH_LAYERS` planned
# inverses of different layers run in one traced call, as a flow's decode
# runs them (without the one comparison of all weights with their plans
# that decode adds, timed in the models benchmark); 'identity' is a traced
# call that returns its input's sum: the fixed cost of calling TensorFlow
# that every other row but the pixel loop pays once.
GRAPH_LAYERS = 8
_CANDIDATES = (
    ('CInC fwd', 'cinc', 'forward'),
    ('CInC inv', 'cinc', 'inverse'),
    ('CInC inv (plan)', 'cinc', 'planned_inverse'),
    ('CInC inv (plan) in a graph', 'cinc', 'planned_inverse_in_graph'),
    ('pixel loop inv', 'cinc', 'pixel_loop'),
    ('raster inv', 'cinc', 'inverse_reference'),
    ('Emerging fwd', 'emerging', 'forward'),
    ('Emerging inv', 'emerging', 'inverse'),
    ('Emerging raster inv', 'emerging', 'inverse_reference'),
    ('TF call', 'cinc', 'identity'),
    ('1x1 fwd', 'conv1x1', 'forward'),
    ('1x1 inv', 'conv1x1', 'inverse'),
    ('1x1 fwd (TFP LU)', 'scale_matvec_lu', 'forward'),
    ('1x1 inv (TFP LU)', 'scale_matvec_lu', 'inverse'),
    ('ActNorm fwd+ldj', 'actnorm', 'forward_and_log_det'),
    ('ActNorm fwd+ldj (TFP)', 'scale_shift', 'forward_and_log_det'),
)
# (column title, numerator, denominator) of the ratio tables.
_RATIOS = (
    ('raster / CInC inv', 'raster inv', 'CInC inv'),
    ('CInC inv / fwd', 'CInC inv', 'CInC fwd'),
    ('pixel loop / CInC inv (plan)', 'pixel loop inv', 'CInC inv (plan)'),
    ('pixel loop / CInC inv (plan) in a graph', 'pixel loop inv',
     'CInC inv (plan) in a graph'),
    ('pixel loop / TF call', 'pixel loop inv', 'TF call'),
    ('CInC inv / CInC inv (plan)', 'CInC inv', 'CInC inv (plan)'),
    ('Emerging inv / CInC inv', 'Emerging inv', 'CInC inv'),
    ('Emerging / CInC, raster inv', 'Emerging raster inv', 'raster inv'),
    ('TFP LU / 1x1 inv', '1x1 inv (TFP LU)', '1x1 inv'),
    ('TFP / ActNorm fwd+ldj', 'ActNorm fwd+ldj (TFP)', 'ActNorm fwd+ldj'),
)


def _build(shape, seed):
  """The three bijectors for `shape`, with weights perturbed from the init."""
  channels = shape[-1]

  def perturbed(parameters, salt):
    return {name: value if name in init.FIXED else value + 0.05 *
            tf.random.stateless_normal(value.shape, (seed, 100 * salt + m),
                                       dtype=value.dtype)
            for m, (name, value) in enumerate(parameters.items())}

  conv1x1 = perturbed(init.conv1x1(channels, seed=(seed, 3)), 2)
  actnorm = perturbed(init.actnorm(channels), 3)
  return {
      'cinc': bijectors.CIncConv2D(**perturbed(
          init.cinc_conv(channels, seed=(seed, 1)), 0)),
      'emerging': bijectors.EmergingConv2D(**perturbed(
          init.emerging_conv(channels, seed=(seed, 2)), 1)),
      'conv1x1': bijectors.Conv1x1(**conv1x1),
      # The same map as TFP's LU-parametrized matvec, per pixel.
      'scale_matvec_lu': tfp.bijectors.ScaleMatvecLU(
          tf.linalg.set_diag(conv1x1['lower_upper'],
                             conv1x1['sign'] * tf.exp(conv1x1['log_scale'])),
          conv1x1['permutation']),
      'actnorm': bijectors.ActNorm(**actnorm),
      # ActNorm as TFP's pieces: shift, then scale by exp(log_scale).
      'scale_shift': tfp.bijectors.Chain([
          tfp.bijectors.Scale(log_scale=actnorm['log_scale']),
          tfp.bijectors.Shift(actnorm['bias'])]),
  }


def _forward_and_log_det(bijector, x):
  """`y` plus the sum of log|det J| (scalar for a constant Jacobian, else
  per image): both computed in one traced call."""
  log_det = bijector.forward_log_det_jacobian(x, event_ndims=3)
  return bijector.forward(x) + tf.reduce_sum(log_det)


def _planned(cinc, shape, check=True):
  """`cinc` with the `InversePlan` of its weights for images of `shape`
  (`(H, W, C)`), compared with them at each inverse with `check`."""
  return bijectors.CIncConv2D(cinc.kernel, cinc.log_diag, cinc.bias,
                              corner=cinc.corner,
                              inverse_plan=cinc.plan_inverse(shape[1],
                                                             shape[0]),
                              check_plan=check)


def _inverses(layers, y):
  """The inverse of `layers` applied in order (the last one first)."""
  for layer in reversed(layers):
    y = layer.inverse(y)
  return y


def _summed(method, spec, jit):
  """`method` traced for inputs of `spec`, returning the sum of its output.

  A fresh symbolic input per trace, so the bijector cache never hits; the
  sum makes `.numpy()` wait for (and fetch) the whole result. `method` is
  closed over, not a default argument: `tf.function` binds default
  arguments at every call, and for a list of bijectors that cost 0.4-0.6 ms
  a call.
  """
  return tf.function(lambda t: tf.reduce_sum(method(t)),
                     input_signature=[spec], jit_compile=jit or None)


def layer_candidates(shape, batch_size, jit, with_raster=True, seed=0):
  """(`{name: (fn, input)}`, `x`): each candidate of `_CANDIDATES` as a traced
  function of `[batch_size, *shape]` images that returns the sum of its
  output, with its input: the random images `x` for a forward, the layer's
  output on `x` for an inverse (which should then sum to `x`'s sum)."""
  layers = _build(shape, seed)
  spec = tf.TensorSpec([batch_size, *shape], tf.float32)
  x = tf.random.stateless_normal(spec.shape, [seed, 1])
  candidates = {}
  cinc = layers['cinc']
  for name, key, direction in _CANDIDATES:
    if direction == 'inverse_reference' and not with_raster:
      continue
    if direction == 'pixel_loop':
      if pixel_loop.available():
        kernel = cinc.effective_kernel().numpy()
        bias = cinc.bias.numpy().astype(np.float64)
        candidates[name] = (
            lambda y, kernel=kernel, bias=bias: np.sum(pixel_loop.solve(  # pylint: disable=g-long-lambda
                y - bias, kernel, cinc.corner)),
            cinc.forward(x).numpy().astype(np.float64))
      continue
    if direction == 'planned_inverse_in_graph':
      layers_in_graph = [cinc] + [_build(shape, seed + i)['cinc']
                                  for i in range(1, GRAPH_LAYERS)]
      planned = [_planned(layer, shape, check=False)
                 for layer in layers_in_graph]
      inputs = x
      for layer in layers_in_graph:
        inputs = layer.forward(inputs)
      candidates[name] = (_summed(functools.partial(_inverses, planned),
                                  spec, jit), inputs)
      continue
    if direction == 'planned_inverse':
      method = _planned(cinc, shape).inverse
    elif direction == 'identity':
      method = tf.identity
    elif direction == 'forward_and_log_det':
      method = functools.partial(_forward_and_log_det, layers[key])
    else:
      method = getattr(layers[key], direction)
    inputs = (x if direction.startswith('forward') else layers[key].forward(x))
    candidates[name] = (_summed(method, spec, jit), inputs)
  return candidates, x


def time_layers(shape, batch_size, repeats, raster_repeats, jit, seed=0):
  """Median ms per call of each candidate on `[batch_size, *shape]` images."""
  candidates, _ = layer_candidates(shape, batch_size, jit,
                                   with_raster=raster_repeats > 0, seed=seed)
  calls = {name: functools.partial(function, inputs)
           for name, (function, inputs) in candidates.items()}
  raster = {name for name, _, direction in _CANDIDATES
            if direction == 'inverse_reference'}
  counts = {name: raster_repeats if name in raster else repeats
            for name in calls}
  ms = harness.median_ms(calls, counts)
  for name, _, direction in _CANDIDATES:
    if direction == 'planned_inverse_in_graph' and name in ms:
      ms[name] /= GRAPH_LAYERS
  return ms


def run_layers(batch_sizes=(1, 10, 100, 256), repeats=20,
               shapes=((32, 32, 3),), raster_repeats=3, jit=False):
  """Runs the `layers` benchmark and returns its report: for each batch
  size, a table of timings and one of ratios."""
  header = (f'TF {tf.__version__} | batch sizes '
            f'{",".join(map(str, batch_sizes))} | {harness.processors()} | '
            f'jit {jit} | median of {repeats} (raster {raster_repeats})')
  names = [name for name, _, _ in _CANDIDATES]
  blocks = [header]
  for batch_size in batch_sizes:
    timing_rows = [['shape'] + [f'{name} ms' for name in names]]
    ratio_rows = [['shape'] + [ratio[0] for ratio in _RATIOS]]
    for shape in shapes:
      ms = time_layers(shape, batch_size, repeats, raster_repeats, jit)
      label = 'x'.join(map(str, shape))
      timing_rows.append(
          [label] + [f'{ms[n]:.2f}' if n in ms else '-' for n in names])
      ratio_rows.append([label] + [
          harness.ratio(ms, numerator, denominator)
          for _, numerator, denominator in _RATIOS])
    blocks += [f'batch {batch_size}', harness.markdown(timing_rows),
               harness.markdown(ratio_rows)]
  return '\n\n'.join(blocks)
