"""tfmusic: production TensorFlow/Keras music machine learning.

Subpackages are grouped by what they are about: ``audio`` (I/O, the one STFT, chunking),
``data`` (TFRecord schema, dMelodies, multitrack stems, measures, sprites), ``models``,
``training`` (the one tf.distribute trainer), ``evaluation``, ``music``, ``export`` and ``serving``.
Importing the package is cheap: TensorFlow is imported only by the modules that need it.
"""

__version__ = "0.1.0"
