"""The benchmarks (harness, layers, models) and their command line, on tiny
configurations."""

import os
import re
import subprocess
import sys

from absl import flags
import pytest
import tensorflow as tf

from benchmarks import __main__ as command
from benchmarks import harness
from benchmarks import drift
from benchmarks import layers
from benchmarks import memory
from benchmarks import models
from benchmarks import quality
from tests import train_helpers as helpers

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(
      [sys.executable, '-m', 'benchmarks', *args], cwd=_ROOT, env=env,
      capture_output=True, text=True, timeout=60, check=False)


def _table(report, title, first='shape'):
  """The rows (lists of cells) of the markdown table whose header has title."""
  for block in report.split('\n\n'):
    lines = block.splitlines()
    if lines and lines[0].startswith(f'| {first}') and title in lines[0]:
      return [[c.strip() for c in line.strip('|').split('|')]
              for line in lines if not line.startswith('|-')]
  raise AssertionError(f'no table with {title!r} in:\n{report}')


def test_layers_report_has_every_candidate_and_ratio():
  report = layers.run_layers(batch_sizes=[2], repeats=1, shapes=[(4, 4, 4)],
                             raster_repeats=1)
  header = report.splitlines()[0]
  for field in ('TF ', 'batch sizes 2', 'CPUs ', 'threads default',
                'jit False'):
    assert field in header
  assert '\n\nbatch 2\n\n' in report
  timings = _table(report, 'CInC fwd ms')
  assert timings[0] == ['shape'] + [f'{name} ms' for name, _, _ in
                                    layers._CANDIDATES]
  assert len(timings) == 2 and timings[1][0] == '4x4x4'
  assert all(float(cell) > 0 for cell in timings[1][1:])
  ratios = _table(report, 'CInC inv / fwd')
  assert ratios[0] == ['shape'] + [ratio[0] for ratio in layers._RATIOS]
  assert ratios[1][0] == '4x4x4'
  # Ratios only: the targets are the README's.
  assert all(cell.endswith('x') and float(cell[:-1]) > 0
             for cell in ratios[1][1:])


def test_layer_candidates_compute_what_their_labels_say():
  import numpy as np  # pylint: disable=g-import-not-at-top
  # label: (layer, method), written out here apart from _CANDIDATES.
  labels = {
      'CInC fwd': ('cinc', 'forward'),
      'CInC inv': ('cinc', 'inverse'),
      'CInC inv (plan)': ('cinc', 'planned_inverse'),
      'CInC inv (plan) in a graph': ('cinc', 'planned_inverse_in_graph'),
      'pixel loop inv': ('cinc', 'pixel_loop'),
      'raster inv': ('cinc', 'inverse_reference'),
      'Emerging fwd': ('emerging', 'forward'),
      'Emerging inv': ('emerging', 'inverse'),
      'Emerging raster inv': ('emerging', 'inverse_reference'),
      'TF call': ('cinc', 'identity'),
      '1x1 fwd': ('conv1x1', 'forward'),
      '1x1 inv': ('conv1x1', 'inverse'),
      '1x1 fwd (TFP LU)': ('scale_matvec_lu', 'forward'),
      '1x1 inv (TFP LU)': ('scale_matvec_lu', 'inverse'),
      'ActNorm fwd+ldj': ('actnorm', 'forward_and_log_det'),
      'ActNorm fwd+ldj (TFP)': ('scale_shift', 'forward_and_log_det'),
  }
  assert {name: (key, direction) for name, key, direction
          in layers._CANDIDATES} == labels
  candidates, x = layers.layer_candidates((4, 6, 4), 3, jit=False)
  assert list(candidates) == list(labels)
  built = layers._build((4, 6, 4), seed=0)  # The same weights.
  for name, (key, direction) in labels.items():
    function, inputs = candidates[name]
    if direction == 'identity':
      np.testing.assert_array_equal(inputs, built[key].forward(x))
      expected = inputs
    elif direction == 'planned_inverse_in_graph':
      # GRAPH_LAYERS layers, the first the others' weights with seed 0.
      chain = [built[key]] + [layers._build((4, 6, 4), seed=i)[key]
                              for i in range(1, layers.GRAPH_LAYERS)]
      y = x
      for layer in chain:
        y = layer.forward(y)
      np.testing.assert_allclose(inputs, y, rtol=1e-5, atol=1e-5)
      assert not np.allclose(chain[0].kernel, chain[1].kernel)
      expected = x
    elif direction == 'forward':
      np.testing.assert_array_equal(inputs, x)
      expected = built[key].forward(x)
    elif direction == 'forward_and_log_det':  # The two ActNorms agree.
      np.testing.assert_array_equal(inputs, x)
      log_det = 4 * 6 * tf.reduce_sum(built['actnorm'].log_scale)
      expected = (built['actnorm'].forward(x) + log_det).numpy()
      assert not np.allclose(log_det, 0.)
    else:  # Every inverse, fast or raster, gives back the images.
      np.testing.assert_allclose(inputs, built[key].forward(x), rtol=1e-6)
      expected = x
    np.testing.assert_allclose(function(inputs), np.sum(expected), rtol=1e-4,
                               atol=1e-3, err_msg=name)


def test_layers_without_raster_leave_its_cells_empty():
  report = layers.run_layers(batch_sizes=[2], repeats=1, shapes=[(4, 4, 4)],
                             raster_repeats=0)
  timings = dict(zip(*_table(report, 'CInC fwd ms')))
  assert timings['raster inv ms'] == timings['Emerging raster inv ms'] == '-'
  ratios = dict(zip(*_table(report, 'CInC inv / fwd')))
  assert ratios['raster / CInC inv'] == '-'
  assert ratios['Emerging / CInC, raster inv'] == '-'


def test_models_report_has_every_model_and_ratio():
  report = models.run_models(image_shape=(8, 8, 3), levels=2, depth=1,
                             width=32, num_samples=2, batch_size=2, repeats=1)
  header = report.splitlines()[0]
  for field in ('TF ', 'image 8x8x3', '2 samples', 'train batch 2', 'CPUs ',
                'medians of 1 rounds'):
    assert field in header
  timings = _table(report, 'sample 2 ms', first='config')
  assert timings[0] == ['config', 'model', 'width', 'params', 'sample 2 ms',
                        'train step 2 ms']
  assert [row[1] for row in timings[1:]] == [m[0] for m in models.MODELS]
  params = {}
  widths = {}
  for config, name, width, count, sample_ms, train_ms in timings[1:]:
    assert config == 'L2 D1 w32'
    params[name], widths[name] = int(count.replace(',', '')), int(width)
    assert params[name] > 0 and float(sample_ms) > 0 and float(train_ms) > 0
  assert widths['Glow'] == widths['CInC+quad'] == 32
  # TFP's Glow and the narrower quad flow are sized to within a few percent
  # of ours.
  assert widths['CInC+quad (Glow params)'] < 32
  for name in ('TFP Glow', 'CInC+quad (Glow params)'):
    assert abs(params[name] / params['Glow'] - 1) < 0.05
  ratios = _table(report, 'L2 D1 w32', first='ratio')
  assert ratios[0] == ['ratio', 'L2 D1 w32']
  assert [row[0] for row in ratios[1:]] == [r[0] for r in models._RATIOS]
  for _, cell in ratios[1:]:
    median, low, high = map(float, re.fullmatch(
        r'(\d+\.\d\d)x \((\d+\.\d\d)-(\d+\.\d\d)\)', cell).groups())
    assert 0 < low <= median <= high
  assert 'num_steps_per_block=1' in report and 'num_hidden=' in report


def test_models_report_on_some_rows():
  report = models.run_models(image_shape=(8, 8, 3), levels=2, depth=1,
                             width=8, num_samples=2, batch_size=2, repeats=1,
                             models=['Glow', 'CInC+affine'])
  timings = _table(report, 'sample 2 ms', first='config')
  assert [row[1] for row in timings[1:]] == ['CInC+affine', 'Glow']
  ratios = {row[0]: row[1] for row in _table(report, 'L2 D1 w8',
                                              first='ratio')}
  assert ratios['CInC+affine / Glow sampling'].endswith(')')
  assert ratios['CInC+quad / Glow sampling'] == '-'
  assert 'TFP Glow' not in report


def test_round_times_pair_the_calls_of_each_round():
  log = []
  calls = {name: (lambda name=name: log.append(name)) for name in 'abc'}
  times = harness.round_times_ms(calls, {'a': 3, 'b': 3, 'c': 1})
  assert {name: len(ms) for name, ms in times.items()} == {'a': 3, 'b': 3,
                                                           'c': 1}
  # A warm-up call each, then rounds: each round calls every name once
  # while it has calls left.
  rounds = log[3:]
  assert sorted(rounds[:3]) == ['a', 'b', 'c']
  assert sorted(rounds[3:5]) == sorted(rounds[5:]) == ['a', 'b']


def test_paired_ratio_is_the_median_of_the_pairs_ratios():
  times = {'new': [2., 4., 9.], 'old': [1., 1., 3.], 'other': [5.]}
  # Pairs 2, 4 and 3; the medians' ratio would be 4 / 1.
  assert harness.paired_ratio(times, 'new', 'old') == '3.00x (2.00-4.00)'
  assert harness.paired_ratio(times, 'other', 'new') == '2.50x (2.50-2.50)'
  assert harness.paired_ratio(times, 'new', 'missing') == '-'
  # Quartiles by nearest rank: of four ratios, the first and the third.
  four = {'a': [1., 2., 3., 4.], 'b': [1.] * 4}
  assert harness.paired_ratio(four, 'a', 'b') == '2.50x (1.00-3.00)'


def test_served_report_times_the_saved_model_in_a_tensorflow_only_process():
  report = models.run_served((8, 8, 3), 2, 1, 8, (1, 3), 1, ['CInC+affine'],
                             rounds=2)
  rows = _table(report, 'served sample ms', first='model')
  assert rows[0] == ['model', 'batch', 'sample ms', 'served sample ms',
                     'ratio', 'decode ms', 'served decode ms', 'ratio']
  assert [row[:2] for row in rows[1:]] == [['CInC+affine', '1'],
                                           ['CInC+affine', '3']]
  for row in rows[1:]:
    assert all(float(cell) > 0 for cell in row[2:4] + row[5:7])
    for ratio in (row[4], row[7]):
      # The median of the pairs' ratios, and their quartiles around it.
      median, low, high = map(float, re.fullmatch(
          r'(\d+\.\d\d)x \((\d+\.\d\d)-(\d+\.\d\d)\)', ratio).groups())
      assert 0 < low <= median <= high
  # The process that loaded the SavedModel imported neither cinc_tfp nor TFP.
  assert 'imported' not in report


def test_served_timing_reports_its_process_failure(monkeypatch):
  monkeypatch.setattr(models, '_SERVED_TIMING',
                      'raise SystemExit("no SavedModel to serve")')
  with pytest.raises(RuntimeError, match='no SavedModel to serve'):
    models.time_served((8, 8, 3), 2, 1, 8, 'cinc', 'affine', (1,), 1, 1)


def test_memory_report_has_every_row_and_ratio():
  progress = []
  report = memory.run_memory(depths=(1,), couplings=('affine',),
                             image_shape=(8, 8, 3), levels=2, width=4,
                             batch_size=2, repeats=1, progress=progress.append)
  header = report.splitlines()[0]
  for field in ('TF ', 'image 8x8x3', 'L=2', 'width 4', 'batch 2', 'CPUs '):
    assert field in header
  rows = _table(report, 'step MB', first='coupling')
  assert rows[0] == ['coupling', 'D', 'step MB', 'step MB (recompute)',
                     'peak MB', 'peak MB (recompute)', 'step ms',
                     'step ms (recompute)']
  assert [row[:2] for row in rows[1:]] == [['affine', '1']]
  # Each row is reported as soon as it is measured.
  assert progress == [' | '.join(f'{name}: {value}'
                                 for name, value in zip(rows[0], rows[1]))]
  assert all(float(cell) >= 0 for cell in rows[1][2:4])
  # The peak holds TensorFlow and the model: hundreds of MB.
  assert all(float(cell) > 100 for cell in rows[1][4:6])
  assert all(float(cell) > 0 for cell in rows[1][6:])
  ratios = _table(report, 'step MB / at D=1', first='coupling')
  assert ratios[0][2:] == ['step MB / at D=1', 'step MB / at D=1 (recompute)',
                           'recompute / stored, peak MB',
                           'recompute / stored, step time']
  # Against itself: 1, or '-' where the step was too small to register.
  for cell, measured in zip(ratios[1][2:4], rows[1][2:4]):
    assert cell == ('1.00x' if float(measured) > 0 else '-')
  assert all(cell.endswith('x') for cell in ratios[1][4:])


def test_step_memory_grows_with_the_batch():
  """The measure sees activations: 16 times the batch, clearly more."""
  small, large = [memory._memory_in_fresh_process(
      image_shape=(16, 16, 3), levels=2, depth=2, width=32, coupling='affine',
      recompute=False, batch_size=batch_size) for batch_size in (4, 64)]
  assert large['step'] > 2 * small['step'] + 5


def test_drift_report_rebuilds_each_level_input_to_rounding():
  report = drift.run_drift(depths=(2,), levels=2, width=4, batch_size=8,
                           train_steps=2)
  rows = _table(report, 'level 0 max error', first='D')
  assert rows[0] == ['D', 'level 0 max error', 'level 0 relative',
                     'level 1 max error', 'level 1 relative',
                     'gradient error, stored (relative)',
                     'gradient error, recompute (relative)']
  assert rows[1][0] == '2'
  # float32 rounding through two steps and back, not zero and no more.
  levels = [float(cell) for cell in rows[1][1:5]]
  assert all(0 <= error < 1e-5 for error in levels) and any(levels)
  # Both float32 gradients off the float64 one by rounding, recompute's
  # within a small factor of float32's own (measured: 1.2e-5 and 1.1e-5).
  stored, recomputed = [float(cell) for cell in rows[1][5:]]
  assert 0 < stored < 1e-3 and 0 < recomputed < 1e-3
  assert recomputed < 10 * stored


def test_quality_report_is_reproducible_from_its_seeds():
  """Every run of a seed is the same run: the same seed twice gives the same
  bits/dim, so each row's spread is 0 and so is each difference's."""
  lines = []
  report = quality.run_quality(
      image_size=8, levels=1, depth=1, width=4, batch_size=4, steps=3,
      seeds=(0, 0), rows=['Glow', 'CInC+quad (Glow params)', 'TFP Glow'],
      progress=lines.append)
  header = report.splitlines()[0]
  for field in ('TF ', 'embedded, image 8x8x1', 'L=1, D=1, width 4',
                '3 steps of batch 4', 'learning_rate 0.003', 'seeds 0,0',
                'CPUs '):
    assert field in header
  rows = _table(report, 'test bits/dim (mean)', first='model')
  assert rows[0] == ['model', 'width', 'params', 'test bits/dim (mean)',
                     'std', 'per seed', 'run s']
  assert [row[0] for row in rows[1:]] == ['Glow', 'CInC+quad (Glow params)',
                                          'TFP Glow']
  params = {row[0]: int(row[2].replace(',', '')) for row in rows[1:]}
  for row in rows[1:]:
    first, second = row[5].split()
    assert first == second and row[4] == '0.0000', row
    # Three steps from the start: far from trained, but finite.
    assert 1 < float(row[3]) < 100 and float(row[6]) > 0
  assert abs(params['TFP Glow'] / params['Glow'] - 1) < 0.1
  assert abs(params['CInC+quad (Glow params)'] / params['Glow'] - 1) < 0.2
  differences = _table(report, 'minus Glow (mean)', first='model')
  assert [row[0] for row in differences[1:]] == ['CInC+quad (Glow params)',
                                                 'TFP Glow']
  for row in differences[1:]:
    assert row[2] == '0.0000' and row[4] == 'yes' and float(row[1]) != 0
  assert len(lines) == 6 and lines[0].startswith('Glow seed 0: test bits/dim')


def test_tfp_glow_model_fits_and_swaps_in_its_averages():
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cinc_tfp import training  # pylint: disable=g-import-not-at-top
  shape = (4, 4, 1)
  x = tf.random.stateless_uniform((8, *shape), [0, 1], -0.5, 0.5)
  model = models.TFPGlowFlow(models.tfp_glow(shape, 1, 1, 4), shape)
  before = float(tf.reduce_mean(model.bits_per_dim(x)))
  variables = model.glow.trainable_variables
  optimizer = training.optimizer('adam', 1e-2, ema=0.5, variables=variables)
  model.compile(optimizer=optimizer)
  history = model.fit(tf.data.Dataset.from_tensors(x).repeat(), epochs=1,
                      steps_per_epoch=20, verbose=0, shuffle=False)
  raw = [v.numpy() for v in variables]
  after = float(tf.reduce_mean(model.bits_per_dim(x)))
  assert after < before - 0.1 and history.history['bits_per_dim']
  optimizer.swap_in_averages(variables)
  averaged = [v.numpy() for v in variables]
  assert any(not np.allclose(a, b) for a, b in zip(raw, averaged))


def test_models_rows_are_checked():
  with pytest.raises(ValueError, match=r'unknown.*Emerging\+quad'):
    models.check_models(['Glow', 'Emerging+quad'])
  models.check_models(['Glow', 'CInC+affine'])


def test_quality_rows_without_reversal_train_the_papers_steps():
  report = quality.run_quality(
      image_size=8, levels=1, depth=2, width=4, batch_size=4, steps=3,
      seeds=(0,), rows=['CInC+affine (no reversal)', 'CInC+affine'])
  rows = {row[0]: row for row in _table(report, 'test bits/dim (mean)',
                                        first='model')[1:]}
  plain, reversed_ = rows['CInC+affine (no reversal)'], rows['CInC+affine']
  assert plain[2] == reversed_[2]  # The reversal has no weights.
  assert plain[3] != reversed_[3]


def test_the_flags_name_each_row_of_both_tables_once():
  with pytest.raises(ValueError) as error:
    models.check_models(['Nope'], models.MODELS + quality.ROWS)
  assert str(error.value).count("'Glow'") == 1, error.value


def test_quality_rows_are_checked():
  with pytest.raises(ValueError, match='unknown'):
    quality.check_rows(['Glow', 'Nope'])
  with pytest.raises(ValueError, match='need Glow'):
    quality.check_rows(['CInC+quad (Glow params)'])
  quality.check_rows(['Glow', 'TFP Glow'])


# The two ways `_run` fails: a row of the other benchmark (`models` checks
# its rows as `quality` does, below), and data that does not load.
@pytest.mark.parametrize('args, words', [
    (['models', '--models=Glow,1x1+quad'], ['1x1+quad']),
    (['quality', '--dataset=folder:/no/such/folder', '--models=Glow'],
     ['/no/such/folder']),
])
def test_quality_and_models_reject_rows_and_data_with_one_line(args, words):
  helpers.assert_fails_with_one_line(_run(*args), *words)


def test_matched_flow_width_is_the_closest_width():
  from cinc_tfp import flow  # pylint: disable=g-import-not-at-top
  shape, levels, depth = (8, 8, 4), 2, 1
  count = lambda width: models.count_parameters(flow.CIncFlow(
      shape, levels=levels, depth=depth, width=width, conv='cinc',
      coupling='quad').trainable_variables)
  matched = lambda target: models.matched_flow_width(
      shape, levels, depth, 'cinc', 'quad', target)
  at_40, at_41 = count(40), count(41)
  assert matched(at_40) == 40
  assert matched((3 * at_40 + at_41) / 4) == 40
  assert matched((at_40 + 3 * at_41) / 4) == 41
  assert matched(1) == 1  # Below every count: the narrowest flow.


@pytest.mark.parametrize('text, expected', [
    ('32x32x3', [(32, 32, 3)]),
    ('4x4x4, 8X8x12', [(4, 4, 4), (8, 8, 12)]),
])
def test_parse_shapes(text, expected):
  assert harness.parse_shapes(text) == expected


@pytest.mark.parametrize('text', ['', '4x4', '4x4x0', '4x-4x4', 'axbxc', '4x4x4,'])
def test_parse_shapes_rejects_malformed(text):
  with pytest.raises(ValueError, match='--shapes'):
    harness.parse_shapes(text)


def test_threads_flag_limits_tensorflow_and_says_so():
  result = _run('layers', '--threads=1', '--shapes=4x4x4', '--batch_sizes=2',
                '--repeats=1', '--raster_repeats=0')
  assert result.returncode == 0, result.stderr
  assert '| threads 1 |' in result.stdout.splitlines()[0]
  assert 'Emerging inv ms' in result.stdout


def test_threads_limit_the_pixel_loop_too():
  pytest.importorskip('numba')
  result = subprocess.run(
      [sys.executable, '-c', 'from benchmarks import harness; '
       'harness.use_threads(1); import numba; print(numba.get_num_threads())'],
      cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
      check=False, timeout=120)
  assert result.stdout.strip() == '1', result.stderr


def test_unknown_benchmark_fails_with_one_line():
  helpers.assert_fails_with_one_line(_run('nope'), 'nope', 'layers')


@pytest.mark.parametrize('benchmark_name, flag, name', [
    ('layers', '--batch_sizes=1,-1', 'batch_sizes'),
    ('layers', '--shapes=32x32', 'shapes'),
    ('layers', '--repeats=0', 'repeats'),
    ('layers', '--threads=-1', 'threads'),
    ('models', '--image_shape=30x30x3', 'image_shape'),
    ('models', '--image_shape=32x32', 'image_shape'),
    ('models', '--levels=0', 'levels'),
    ('models', '--batch_size_train=0', 'batch_size_train'),
    ('models', '--served_models=TFP Glow', 'served_models'),
    ('models', '--models=Glow,Nope', 'models'),
    ('models', '--models=CInC+affine,TFP Glow', 'models'),
    ('models', '--models=', 'models'),
    ('memory', '--depths=4,0', 'depths'),
    ('memory', '--couplings=quad,additive', 'couplings'),
    ('drift', '--train_steps=0', 'train_steps'),
    ('quality', '--seeds=0,x', 'seeds'),
    ('quality', '--steps=0', 'steps'),
    ('quality', '--dataset=nope', 'dataset'),
    ('quality', '--ema=1', 'ema'),
    ('quality', '--models=Nope', 'models'),
])
def test_bad_flag_fails_clearly(benchmark_name, flag, name):
  flag_values = flags.FlagValues()
  command.define_flags(flag_values)
  with pytest.raises(flags.Error, match=f'--{name}'):
    flag_values(['benchmarks', benchmark_name, flag])


def test_bad_flag_fails_with_one_line_in_a_process():
  helpers.assert_fails_with_one_line(_run('models', '--image_shape=30x30x3'),
                                     'Flags parsing error', '--image_shape')
