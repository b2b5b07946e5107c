"""Separation training tasks (IASS and Open-Unmix) for the one trainer, and their configuration.

Both models see mixture magnitudes ``(B, C, T, 2049)`` (``center=False`` STFT, 4096/1024, computed
in float32 even under mixed precision) and are trained on ``tfmusic.data.stems.dataset`` batches
``(mixture, target, activity)``.

Losses (spec A.6): both models minimise MSE(estimate magnitude, target magnitude); IASS adds
``activity_weight`` (default 2) x BCE-with-logits(activity logits, frame activity labels). During
training IASS does not gate its mask by predicted activity (the model's ``training=True`` path);
evaluation runs the inference path (binarised, median-filtered activity gating), so the
validation loss measures what ``tfmusic separate`` will produce.

Optimizer: ``keras.optimizers.AdamW`` with lr 1e-3 and weight decay 1e-5. The reference used
PyTorch ``Adam(weight_decay=1e-5)``, i.e. L2 added to the gradient; AdamW decays the weights
directly (decoupled). At 1e-5 the two differ negligibly, and decoupled decay is the Keras
convention. Reduce-on-plateau factor 0.3 / patience 80 / cooldown 10 and early stopping after
140 evaluation rounds are the trainer defaults (``trainer.plateau``, ``trainer.early_stopping``).

Input statistics: before the first step of a fresh run, per-bin mean and standard deviation of
the training mixtures' magnitudes (``stats_batches`` batches, no augmentation) are computed over
all replicas and workers and set with ``model.set_input_statistics`` (std floored at 1e-4 x max
std inside the model). They are model weights, so a resumed run restores them from the checkpoint.

Fine-tuning (``init_from``): a fresh run may start from the weights of a saved model (a
``model.keras`` file, or the name of a shipped model, e.g. ``iass_drums``) of the same architecture,
target, channels and audio settings; its input statistics are kept (the weights were learnt on
inputs standardized by them), so no statistics pass runs.

Activity gate: after training, IASS's gate threshold is chosen on ``activity_threshold_split`` (the
validation split by default) and stored in ``model.keras`` (:mod:`tfmusic.training.activity_gate`).

Evaluation metrics: ``loss``, ``mse`` and, for IASS, ``bce`` and frame-level activity
``activity_precision`` / ``activity_recall`` / ``activity_f1`` / ``activity_accuracy`` (logit > 0
against the labels).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Mapping

from tfmusic.audio.settings import N_FFT, SAMPLE_RATE, AudioSettings
from tfmusic.data.stems.augment import Augmentation
from tfmusic.training.config import ConfigError, TrainerConfig, deep_merge, from_dict, to_dict
from tfmusic.training.trainer import Task, loss_scale_optimizer, minimize, scale_loss

MODELS = ("iass", "umx")
DEFAULT_CHANNELS = {"iass": 1, "umx": 2}
# IASS trains with a softplus mask (the paper's is ReLU): with ReLU a bass model's mask went dead in the first
# 20 steps (80 steps: validation MSE 15.3, silence 16.4; softplus 7.6), see tfmusic.models.iass.MASK_ACTIVATIONS.
DEFAULT_MODEL_KWARGS = {"iass": {"mask_activation": "softplus"}}


@dataclasses.dataclass
class SeparationConfig:
    """One separation training run (written to ``<run_dir>/config.json``)."""

    model: str = "iass"
    target: str = "vocals"
    nb_channels: int | None = None  # null: 1 for IASS (mono, spec A.2), 2 for Open-Unmix
    data_dir: str = ""
    train_split: str = "train"
    eval_split: str | None = "valid"  # null: no evaluation (then no plateau / early stopping)
    segment_seconds: float = 6.0
    eval_segment_seconds: float | None = None  # null: same as segment_seconds
    augment: bool = True  # false: no augmentation at all (the settings below are ignored)
    augmentation: Augmentation = dataclasses.field(default_factory=Augmentation)  # remix, eq, limiter
    samples_per_epoch: int | None = None  # examples per pass of the training pipeline
    stats_batches: int | None = 32  # batches for the input statistics; null = one full pass
    activity_weight: float = 2.0  # IASS only: weight of the activity BCE term
    activity_threshold_split: str | None = "valid"  # IASS: split the gate threshold is chosen on; null: keep 0.5
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    clipnorm: float | None = None
    model_kwargs: dict = dataclasses.field(default_factory=dict)  # extra IASS / OpenUnmix arguments
    init_from: str | None = None  # fine-tune: start from a saved .keras model or a shipped model's name
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)

    def validate(self, source: str = "config") -> None:
        if self.model not in MODELS:
            raise ConfigError(f"{source}: model must be one of {MODELS}, got {self.model!r}")
        if self.nb_channels is None:
            self.nb_channels = DEFAULT_CHANNELS[self.model]
        if self.nb_channels not in (1, 2):
            raise ConfigError(f"{source}: nb_channels must be 1 or 2, got {self.nb_channels}")
        if self.segment_seconds * SAMPLE_RATE < N_FFT:
            raise ConfigError(f"{source}: segment_seconds={self.segment_seconds} is shorter than one STFT frame")
        for name in ("learning_rate",):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{source}: {name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "activity_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{source}: {name} must be >= 0, got {getattr(self, name)}")
        if self.activity_threshold_split not in (None, "train", "valid", "test"):
            raise ConfigError(f"{source}: activity_threshold_split must be train, valid, test or null, got "
                              f"{self.activity_threshold_split!r}")
        if self.stats_batches is not None and self.stats_batches < 1:
            raise ConfigError(f"{source}: stats_batches must be >= 1 or null, got {self.stats_batches}")
        problem = self.augmentation.problem()
        if problem:
            raise ConfigError(f"{source}: {problem}")
        reserved = {"nb_channels", "target", "name"} & set(self.model_kwargs)
        if reserved:
            raise ConfigError(f"{source}: model_kwargs may not set {sorted(reserved)} (top-level keys)")
        self.trainer.validate(source)


def default_config_dict(model: str) -> dict[str, Any]:
    """The defaults of ``model`` as a nested dict (what ``--print-config`` starts from)."""
    if model not in MODELS:
        raise ConfigError(f"model must be one of {MODELS}, got {model!r}")
    cfg = SeparationConfig(model=model, model_kwargs=dict(DEFAULT_MODEL_KWARGS.get(model, {})))
    cfg.validate("defaults")
    return to_dict(cfg)


def resolve_config(model: str, layers: list[tuple[str, Mapping[str, Any]]]) -> SeparationConfig:
    """Merge ``(source, dict)`` layers over the model defaults; later layers win.

    Each layer is validated for unknown keys first so errors name the file or flag that caused them.
    """
    merged = default_config_dict(model)
    for source, layer in layers:
        if "model" in layer and layer["model"] != model:
            raise ConfigError(f"{source}: configures model {layer['model']!r} but {model!r} is being trained")
        candidate = deep_merge(merged, layer)
        from_dict(SeparationConfig, candidate, source)  # raises with the source named
        merged = candidate
    return from_dict(SeparationConfig, merged, "config")


class SeparationTask(Task):
    """Trains one IASS or Open-Unmix model for one target (see the module docstring)."""

    def __init__(self, config: SeparationConfig) -> None:
        config = copy.deepcopy(config)
        config.validate()
        self.config = config
        self.name = config.model
        self.is_iass = config.model == "iass"

    # ------------------------------------------------------------------ building
    def build(self) -> None:
        import keras

        from tfmusic.audio.stft import ISTFT, STFT, Magnitude

        cfg = self.config
        settings = self.audio_settings()
        # The training spectra are inputs and targets, never exported and never differentiated: the FFT method
        # gives the same spectra as the exportable DFT basis (float32 round-off) at ~1/20 of its cost, which
        # was ~17 % of an IASS and ~47 % of an Open-Unmix step (bench_training_precision.py, "training STFT" rows).
        stft = {"n_fft": settings.n_fft, "hop_length": settings.hop_length, "center": False, "method": "fft",
                "dtype": "float32"}
        self.stft = STFT(**stft, name="train_stft")
        self.magnitude = Magnitude(dtype="float32", name="train_magnitude")
        self.istft = ISTFT(**stft, name="train_istft")
        kwargs = {**cfg.model_kwargs, **settings.as_dict()}  # the model carries its audio settings
        self.model = self.make_model(kwargs)
        self.model.build_for_frames()
        optimizer = keras.optimizers.AdamW(learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                           clipnorm=cfg.clipnorm)
        self.optimizer = loss_scale_optimizer(optimizer)
        self.optimizer.build(self.model.trainable_variables)

    pitch_labels = False  # batches carry the target's multi-pitch roll (the IASS+pitch variant)

    def make_model(self, kwargs: dict[str, Any]):
        """The model to train (IASS or Open-Unmix) from the config and ``kwargs`` (its audio settings
        merged over ``model_kwargs``); variants override this, the rest of :meth:`build` is shared."""
        cfg = self.config
        if self.is_iass:
            from tfmusic.models.iass import IASS

            return IASS(nb_channels=cfg.nb_channels, target=cfg.target, name=f"iass_{cfg.target}", **kwargs)
        from tfmusic.models.openunmix import OpenUnmix

        return OpenUnmix(nb_channels=cfg.nb_channels, target=cfg.target, name=f"umx_{cfg.target}", **kwargs)

    def audio_settings(self) -> AudioSettings:
        """The dataset's sample rate and STFT framing (its activity labels are per frame of it); a
        ``model_kwargs`` override that disagrees is refused rather than trained on misaligned labels."""
        cfg = self.config
        settings = AudioSettings()
        if cfg.data_dir:
            from tfmusic.data.stems.splits import read_manifest

            manifest = read_manifest(cfg.data_dir)
            settings = AudioSettings(int(manifest["config"]["sample_rate"]), int(manifest.get("n_fft", N_FFT)),
                                     int(manifest.get("hop", settings.hop_length)))
        asked = {k: cfg.model_kwargs[k] for k in ("sample_rate", "n_fft", "hop_length") if k in cfg.model_kwargs}
        if asked:
            wanted = AudioSettings(**{**settings.as_dict(), **{k: int(v) for k, v in asked.items()}})
            if wanted != settings:
                raise ConfigError(f"model_kwargs ask for {wanted.describe()} but the dataset {cfg.data_dir or '(none)'} "
                                  f"is framed with {settings.describe()} (its activity labels are per STFT frame); "
                                  f"preprocess the data with those settings or drop the override")
        return settings

    def calibrate_threshold(self, model_path: str) -> dict[str, Any]:
        """After training: IASS's activity gate threshold, chosen on the validation split and stored in the
        model (:mod:`tfmusic.training.activity_gate`). ``{"activity": record}`` (empty when not chosen)."""
        from tfmusic.training import activity_gate

        record = activity_gate.calibrate(self, model_path)
        return {"activity": record} if record else {}

    def checkpoint_items(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer}

    def optimizers(self) -> dict[str, Any]:
        return {"adamw": self.optimizer}

    def export_model(self):
        return self.model

    def recompute_layers(self) -> list:
        """IASS: the U-Net blocks, whose full-resolution internals hold most of a step's memory."""
        return self.model.unet_blocks() if self.is_iass else []

    # ------------------------------------------------------------------ data
    def _options(self, dataset):
        import tensorflow as tf

        options = tf.data.Options()
        # Segments come from a few shards mixed across songs: shard by element, not by file.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options)

    def _train_pipeline(self, augment: bool):
        from tfmusic.data.stems.dataset import make_dataset

        cfg, ctx = self.config, self.context
        return self._options(make_dataset(
            cfg.data_dir, cfg.train_split, cfg.target, ctx.batch_size,
            segment_seconds=cfg.segment_seconds, channels=cfg.nb_channels, augment=augment,
            seed=ctx.seed, deterministic=ctx.deterministic, samples_per_epoch=cfg.samples_per_epoch,
            pitch=self.pitch_labels, augmentation=cfg.augmentation,
        ))

    def train_dataset(self):
        return self._train_pipeline(self.config.augment)

    def eval_dataset(self):
        from tfmusic.data.stems.dataset import make_eval_dataset

        cfg = self.config
        if cfg.eval_split is None:
            return None
        return self._options(make_eval_dataset(
            cfg.data_dir, cfg.eval_split, cfg.target, self.context.batch_size,
            segment_seconds=cfg.eval_segment_seconds or cfg.segment_seconds, channels=cfg.nb_channels,
            pitch=self.pitch_labels,
        ))

    def activation_inputs(self, batch):
        """The model takes magnitudes: activation histograms of two mixtures' forward pass."""
        return self.spectrogram(batch[0][:2])

    def spectrogram(self, waveform):
        return self.magnitude(*self.stft(waveform))

    def prepare(self) -> None:
        """Per-bin input statistics over (un-augmented) training mixtures, identical on all workers;
        or, with ``init_from``, the weights (statistics included) of the model to fine-tune."""
        import numpy as np
        import tensorflow as tf

        if self.config.init_from:
            self._load_initial_weights(self.config.init_from)
            return

        def sums(batch):
            mag = self.spectrogram(batch[0])  # (B, C, T, F)
            return {"s1": tf.reduce_sum(mag, axis=(0, 1, 2)), "s2": tf.reduce_sum(tf.square(mag), axis=(0, 1, 2)),
                    "n": tf.cast(tf.reduce_prod(tf.shape(mag)[:3]), tf.float32)}

        totals = self.context.reduce_over_dataset(self._train_pipeline(augment=False), sums,
                                                  max_batches=self.config.stats_batches,
                                                  desc="input statistics")
        n = float(totals["n"])
        mean = totals["s1"].astype(np.float64) / n
        var = np.maximum(totals["s2"].astype(np.float64) / n - mean**2, 0.0)
        with self.context.strategy.scope():
            self.model.set_input_statistics(mean, np.sqrt(var))

    def _load_initial_weights(self, source: str) -> None:
        """Copy the weights of ``source`` (a .keras file or a shipped model's name) into the fresh model,
        refusing a model of another kind, target, shape or framing."""
        import os

        from tfmusic.models import pretrained
        from tfmusic.models.files import load_keras_file

        path = source if os.path.isfile(source) else None
        if path is None:
            try:
                path = str(pretrained.model_path(source))
            except pretrained.PretrainedError as err:
                raise ConfigError(f"init_from={source!r}: neither a model file nor a shipped model ({err})") from None
        loaded = load_keras_file(path)
        mine, theirs = self.model.get_config(), loaded.get_config()
        keys = ("nb_channels", "target", "n_bins", "max_bin", "mask_activation", "sample_rate", "n_fft", "hop_length")
        differ = [f"{k}: {theirs.get(k)!r} (ours {mine.get(k)!r})" for k in keys if theirs.get(k) != mine.get(k)]
        if type(loaded) is not type(self.model) or differ:
            raise ConfigError(f"init_from={path}: a {type(loaded).__name__} that does not match the "
                              f"{type(self.model).__name__} being trained ({'; '.join(differ) or 'other class'})")
        with self.context.strategy.scope():
            self.model.set_weights(loaded.get_weights())

    # ------------------------------------------------------------------ steps
    def _losses(self, batch, training: bool):
        import tensorflow as tf

        mixture, target, activity = batch
        mix_mag = self.spectrogram(mixture)
        tgt_mag = self.spectrogram(target)
        out = self.model(mix_mag, training=training)
        estimate = tf.cast(out["estimate"], tf.float32)
        mse = tf.reduce_mean(tf.square(estimate - tgt_mag), axis=(1, 2, 3))
        losses = {"mse": mse, "loss": mse}
        if self.is_iass:
            logits = tf.cast(out["activity_logits"], tf.float32)
            labels = tf.cast(activity, tf.float32)
            bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=1)
            losses["bce"] = bce
            losses["loss"] = mse + self.config.activity_weight * bce
            losses["_logits"], losses["_labels"] = logits, labels
        return losses

    def train_step(self, batch) -> dict:
        import tensorflow as tf

        holder: dict = {}

        def loss_fn():
            losses = self._losses(batch, training=True)
            holder.update(losses)
            return scale_loss(losses["loss"])

        minimize(self.optimizer, loss_fn, self.model.trainable_variables)
        return {k: tf.reduce_mean(v) for k, v in holder.items() if not k.startswith("_")}

    def eval_step(self, batch) -> dict:
        import tensorflow as tf

        losses = self._losses(batch, training=False)
        metrics = {k: tf.reduce_mean(v) for k, v in losses.items() if not k.startswith("_")}
        if self.is_iass:
            pred = tf.cast(losses["_logits"] > 0.0, tf.float32)
            true = tf.cast(losses["_labels"] > 0.5, tf.float32)
            metrics["activity_tp"] = tf.reduce_mean(pred * true)
            metrics["activity_fp"] = tf.reduce_mean(pred * (1.0 - true))
            metrics["activity_fn"] = tf.reduce_mean((1.0 - pred) * true)
            metrics["activity_tn"] = tf.reduce_mean((1.0 - pred) * (1.0 - true))
        return metrics

    def finalize_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        if not self.is_iass:
            return metrics
        metrics = dict(metrics)
        tp, fp = metrics.pop("activity_tp"), metrics.pop("activity_fp")
        fn, tn = metrics.pop("activity_fn"), metrics.pop("activity_tn")
        metrics["activity_precision"] = tp / (tp + fp) if tp + fp > 0 else 0.0
        metrics["activity_recall"] = tp / (tp + fn) if tp + fn > 0 else 0.0
        metrics["activity_f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 1.0
        metrics["activity_accuracy"] = (tp + tn) / max(tp + fp + fn + tn, 1e-12)
        return metrics

    def write_summaries(self, batch, step: int) -> None:
        """Audio of mixture / estimate (mixture phase) / target and their dB spectrogram images."""
        import tensorflow as tf

        from tfmusic.training import summaries

        mixture, target = batch[0][:1], batch[1][:1]
        if getattr(self, "_summary_fn", None) is None:
            # compiled once: eager recurrent layers are slow, and this runs at every evaluation
            def forward(mixture, target):
                real, imag = self.stft(mixture)
                mix_mag = self.magnitude(real, imag)
                out = self.model(mix_mag, training=False)
                mask = tf.cast(out["mask"], tf.float32)
                est = self.istft(real * mask, imag * mask, length=int(mixture.shape[-1]))
                logits = out["activity_logits"] if self.is_iass else tf.zeros((1, 1))
                return mix_mag, mask, est, self.spectrogram(target), logits

            self._summary_fn = tf.function(forward)
        mix_mag, mask, est, tgt_mag, logits = self._summary_fn(mixture, target)
        for name, wave in (("mixture", mixture), ("estimate", est), ("target", target)):
            summaries.audio(f"audio/{name}", wave, sample_rate=self.model.sample_rate)
        for name, mag in (("mixture", mix_mag), ("estimate", mix_mag * mask), ("target", tgt_mag)):
            summaries.spectrogram_image(f"spectrogram/{name}", mag)
        if self.is_iass:
            prob = tf.sigmoid(tf.cast(logits, tf.float32))  # (1, T)
            truth = tf.cast(batch[2][:1], tf.float32)
            rows = tf.concat([prob, truth], axis=0)  # row 0 predicted, row 1 labels
            image = tf.repeat(rows, 8, axis=0)[None, :, :, None]
            tf.summary.image("activity/predicted_vs_labels", image)


def run_config_dict(config: SeparationConfig) -> dict[str, Any]:
    """The resolved config as written to ``config.json`` (``model``, ``target``, ``nb_channels`` at top)."""
    return to_dict(config)


__all__ = ["SeparationConfig", "SeparationTask", "resolve_config", "default_config_dict", "run_config_dict",
           "MODELS"]
