"""Training: the one ``tf.distribute`` trainer and the tasks it runs.

- ``trainer``: :class:`~tfmusic.training.trainer.Trainer` (custom loop with ``strategy.run`` +
  ``experimental_distribute_dataset``) and the :class:`~tfmusic.training.trainer.Task` protocol.
- ``strategies``: default / mirrored (GPUs or logical CPUs) / multi-worker strategies, chief logic.
- ``checkpoints``: resumable state, latest + best checkpoints, worker-safe paths.
- ``plateau``: reduce-on-plateau and early-stopping rules.
- ``summaries``: TensorBoard writers, audio and spectrogram images.
- ``config``: typed configs, YAML/JSON files, overrides.
- ``separation``: IASS / Open-Unmix tasks (``tfmusic train``); ``vae``: the VAE tasks.

Importing this package is cheap; TensorFlow is imported by the submodules that need it.
"""
