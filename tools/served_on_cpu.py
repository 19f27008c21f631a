"""Serves a SavedModel of `cinc_tfp.export` on the CPU with plain TensorFlow.

    CUDA_VISIBLE_DEVICES= python tools/served_on_cpu.py RUN/saved_model

Loads the export without importing `cinc_tfp`, samples four images, scores
their quantized form (dequantized to bin centres, as `log_prob` takes
images in `[-0.5, 0.5)`) and prints one line. Part of `tools/gpu_check.sh`,
for a model trained on a GPU.
"""

import sys

import tensorflow as tf


def main(path):
  served = tf.saved_model.load(path)
  labels = [tf.zeros([4], tf.int32)] if int(served.num_classes) else []
  out = served.sample(tf.constant(4), tf.constant(1.0), tf.constant([0, 1]),
                      *labels)
  levels = 2.0**int(served.n_bits)
  bins = tf.floor(tf.cast(out['images_uint8'], tf.float32) * levels / 256.)
  images = (bins + 0.5) / levels - 0.5
  bits = served.bits_per_dim(images, *labels)['bits_per_dim']
  assert 'cinc_tfp' not in sys.modules, 'the export needed cinc_tfp'
  print('SavedModel on the CPU:', tf.config.list_physical_devices('GPU') == [],
        '| samples', tuple(out['images'].shape), '| valid',
        out['valid'].numpy().tolist(), '| bits/dim of their quantized form',
        [round(float(b), 3) for b in bits.numpy()])


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit('usage: python tools/served_on_cpu.py SAVED_MODEL_DIR')
  if not tf.saved_model.contains_saved_model(sys.argv[1]):
    sys.exit(f'served_on_cpu: no SavedModel at {sys.argv[1]!r}')
  main(sys.argv[1])
