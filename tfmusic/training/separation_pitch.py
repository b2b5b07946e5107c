"""The IASS+pitch training task: separation MSE + activity BCE + masked multi-pitch loss.

Why a task of its own: the plain IASS task (:mod:`tfmusic.training.separation`) stays as the
paper specifies; this one trains :class:`~tfmusic.models.iass_pitch.IASSPitch` on the same batches
plus the target's 88-key pitch roll and a per-example "labels known" flag
(``make_dataset(..., pitch=True)``). Everything else (data, STFT, optimizer, input statistics,
activity metrics, summaries) is the IASS task's.

Loss per example: ``mse + activity_weight * bce_activity + pitch_weight * known * pitch_loss``.
``pitch_loss`` is the mean over frames and keys of a class-weighted focal BCE (:func:`multipitch_loss`):
a key is on in ~1 % of frame-key cells, and a plain BCE (``pitch_pos_weight: 1``,
``pitch_focal_gamma: 0``) is minimized by predicting every key off (issue 26: F 0.000), so on-cells
weigh ``pitch_pos_weight`` (default 8) and the easy cells are down-weighted by ``(1 - p_t) ** gamma``
(default 1). Examples without pitch labels (real datasets, drums, version-1 records: ``known = 0``)
add nothing to the pitch term; the per-example loss is still averaged over the global batch
(:func:`scale_loss`). Evaluation adds ``pitch_bce`` (the pitch loss over labelled examples) and
frame-level ``pitch_precision`` / ``pitch_recall`` / ``pitch_f1`` (logit > 0 against the labels).

Decision threshold: after training, :meth:`PitchSeparationTask.calibrate_threshold` runs the saved
model over ``threshold_split`` (default the validation split), picks the threshold on the key
probability (gated by the predicted activity, as ``tfmusic separate --transcribe``) with the best
frame-level F1, and stores it in ``model.keras`` (``IASSPitch.pitch_threshold``) and
``pitch_threshold.json``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

from tfmusic.training.config import ConfigError, deep_merge, from_dict, to_dict
from tfmusic.training.separation import DEFAULT_MODEL_KWARGS, SeparationConfig, SeparationTask

MODEL = "iass_pitch"
log = logging.getLogger(__name__)


@dataclasses.dataclass
class PitchSeparationConfig(SeparationConfig):
    """:class:`SeparationConfig` for IASS+pitch (the pitch keys: module docstring)."""

    model: str = MODEL
    pitch_weight: float = 1.0  # weight of the pitch loss next to the MSE
    pitch_pos_weight: float = 8.0  # weight of on-cells in the pitch BCE (1: unweighted)
    pitch_focal_gamma: float = 1.0  # focal exponent (0: plain BCE)
    threshold_split: str | None = "valid"  # split the decision threshold is chosen on; null: keep 0.5
    threshold_batches: int | None = 50  # batches of it to use; null: all

    def validate(self, source: str = "config") -> None:
        if self.model != MODEL:
            raise ConfigError(f"{source}: model must be {MODEL!r} for the pitch task, got {self.model!r}")
        self.model = "iass"  # the IASS checks apply unchanged (mono default, segment length, weights)
        try:
            super().validate(source)
        finally:
            self.model = MODEL
        for name in ("pitch_weight", "pitch_focal_gamma"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{source}: {name} must be >= 0, got {getattr(self, name)}")
        if self.pitch_pos_weight <= 0:
            raise ConfigError(f"{source}: pitch_pos_weight must be > 0, got {self.pitch_pos_weight}")
        if self.threshold_split not in (None, "train", "valid", "test"):
            raise ConfigError(f"{source}: threshold_split must be train, valid, test or null, got "
                              f"{self.threshold_split!r}")
        if self.threshold_batches is not None and self.threshold_batches < 1:
            raise ConfigError(f"{source}: threshold_batches must be >= 1 or null, got {self.threshold_batches}")


def default_config_dict() -> dict[str, Any]:
    cfg = PitchSeparationConfig(model_kwargs=dict(DEFAULT_MODEL_KWARGS["iass"]))  # the IASS it extends
    cfg.validate("defaults")
    return to_dict(cfg)


def resolve_config(model: str, layers: list[tuple[str, Mapping[str, Any]]]) -> PitchSeparationConfig:
    """As :func:`tfmusic.training.separation.resolve_config`, for ``model == "iass_pitch"``."""
    if model != MODEL:
        raise ConfigError(f"the pitch task trains {MODEL!r}, not {model!r}")
    merged = default_config_dict()
    for source, layer in layers:
        if "model" in layer and layer["model"] != model:
            raise ConfigError(f"{source}: configures model {layer['model']!r} but {model!r} is being trained")
        candidate = deep_merge(merged, layer)
        from_dict(PitchSeparationConfig, candidate, source)
        merged = candidate
    return from_dict(PitchSeparationConfig, merged, "config")


def run_config_dict(config: PitchSeparationConfig) -> dict[str, Any]:
    return to_dict(config)


class PitchSeparationTask(SeparationTask):
    """Trains one IASS+pitch model for one target (module docstring)."""

    pitch_labels = True

    def __init__(self, config: PitchSeparationConfig) -> None:
        super().__init__(config)
        self.name, self.is_iass = MODEL, True

    def make_model(self, kwargs: dict[str, Any]):
        from tfmusic.models.iass_pitch import IASSPitch

        cfg = self.config
        return IASSPitch(nb_channels=cfg.nb_channels, target=cfg.target, name=f"iass_pitch_{cfg.target}", **kwargs)

    def _losses(self, batch, training: bool):
        import tensorflow as tf

        mixture, target, activity, roll, known = batch
        out = self.model(self.spectrogram(mixture), training=training)
        cfg = self.config
        losses = pitch_losses(out, self.spectrogram(target), activity, roll, known, cfg.activity_weight,
                              cfg.pitch_weight, cfg.pitch_pos_weight, cfg.pitch_focal_gamma)
        losses["_pitch_labels"], losses["_known"] = tf.cast(roll, tf.float32), tf.cast(known, tf.float32)
        return losses

    def eval_step(self, batch) -> dict:
        import tensorflow as tf

        losses = self._losses(batch, training=False)
        metrics = {k: tf.reduce_mean(v) for k, v in losses.items() if not k.startswith("_")}
        known = losses["_known"]
        metrics["pitch_bce"] = tf.reduce_sum(losses["pitch_bce"] * known) / tf.maximum(tf.reduce_sum(known), 1.0)
        counts = {"activity": (losses["_logits"], losses["_labels"], None),
                  "pitch": (losses["_pitch_logits"], losses["_pitch_labels"], known[:, None, None])}
        for name, (logits, labels, weight) in counts.items():
            pred = tf.cast(logits > 0.0, tf.float32)
            true = tf.cast(labels > 0.5, tf.float32)
            w = 1.0 if weight is None else weight
            metrics[f"{name}_tp"] = tf.reduce_mean(pred * true * w)
            metrics[f"{name}_fp"] = tf.reduce_mean(pred * (1.0 - true) * w)
            metrics[f"{name}_fn"] = tf.reduce_mean((1.0 - pred) * true * w)
            if name == "activity":
                metrics["activity_tn"] = tf.reduce_mean((1.0 - pred) * (1.0 - true))
        return metrics

    def finalize_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        metrics = dict(metrics)
        tp, fp, fn = (metrics.pop(f"pitch_{k}") for k in ("tp", "fp", "fn"))
        metrics["pitch_precision"] = tp / (tp + fp) if tp + fp > 0 else 0.0
        metrics["pitch_recall"] = tp / (tp + fn) if tp + fn > 0 else 0.0
        metrics["pitch_f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0
        return super().finalize_metrics(metrics)

    def calibrate_threshold(self, model_path: str) -> dict[str, Any]:
        """The activity gate's threshold (as plain IASS), then the pitch threshold: ``{"activity": ...,
        "pitch": ...}`` with the records of those chosen."""
        chosen = super().calibrate_threshold(model_path)
        pitch = self.calibrate_pitch_threshold(model_path)
        return {**chosen, "pitch": pitch} if pitch else chosen

    def calibrate_pitch_threshold(self, model_path: str) -> dict[str, Any] | None:
        """Choose the decision threshold on ``threshold_split`` and store it in ``model_path`` (module
        docstring); returns what ``pitch_threshold.json`` beside it records, or None when switched off."""
        import json
        from pathlib import Path

        import numpy as np
        import tensorflow as tf

        from tfmusic.data.stems.dataset import make_eval_dataset
        from tfmusic.models.files import load_keras_file
        from tfmusic.training.checkpoints import save_model_atomic

        cfg = self.config
        if cfg.threshold_split is None:
            return None
        model = load_keras_file(model_path)
        try:
            dataset = make_eval_dataset(cfg.data_dir, cfg.threshold_split, cfg.target, self.context.batch_size,
                                        segment_seconds=cfg.eval_segment_seconds or cfg.segment_seconds,
                                        channels=cfg.nb_channels, pitch=True)
        except ValueError as err:  # e.g. a split without songs: the model keeps its threshold
            log.warning("pitch threshold not calibrated: %s", err)
            return None
        if cfg.threshold_batches:
            dataset = dataset.take(cfg.threshold_batches)

        @tf.function
        def forward(mixture):
            out = model(self.spectrogram(mixture), training=False)
            raw = tf.cast(out["pitch_logits"], tf.float32) + model.pitch_offset  # undo the stored threshold
            active = tf.sigmoid(tf.cast(out["activity_logits"], tf.float32)) >= model.activity_threshold
            return tf.sigmoid(raw) * tf.cast(active, tf.float32)[..., None]

        probs, labels = [], []
        for mixture, _, _, roll, known in dataset:
            keep = known.numpy() > 0.5
            probs.append(forward(mixture).numpy()[keep])
            labels.append(roll.numpy()[keep] > 0.5)
        if not probs or not sum(len(p) for p in probs):
            log.warning("pitch threshold not calibrated: no pitch-labelled segments in the %s split",
                        cfg.threshold_split)
            return None
        probs, labels = np.concatenate(probs), np.concatenate(labels)
        threshold, f1 = choose_threshold(probs, labels)
        model.pitch_threshold = threshold
        save_model_atomic(model, model_path)
        record = {"threshold": threshold, "f1": f1, "f1_at_0.5": frame_f1(probs >= 0.5, labels),
                  "split": cfg.threshold_split, "frames": int(probs.shape[0] * probs.shape[1]),
                  "on_cells": int(labels.sum())}
        (Path(model_path).parent / "pitch_threshold.json").write_text(json.dumps(record, indent=1) + "\n")
        return record


THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95


def frame_f1(pred, labels) -> float:
    """Micro F1 of boolean arrays (frame-key cells); 0 when nothing is on in either."""
    import numpy as np

    pred, labels = np.asarray(pred, bool), np.asarray(labels, bool)
    tp = int(np.sum(pred & labels))
    denominator = int(np.sum(pred)) + int(np.sum(labels))
    return 2.0 * tp / denominator if denominator else 0.0


def choose_threshold(probs, labels, grid=THRESHOLDS) -> tuple[float, float]:
    """``(threshold, F1)`` of the grid value with the best :func:`frame_f1` (ties: nearest 0.5)."""
    scored = [(frame_f1(probs >= t, labels), -abs(t - 0.5), t) for t in grid]
    f1, _, threshold = max(scored)
    return float(threshold), float(f1)


def multipitch_loss(labels, logits, pos_weight: float = 1.0, focal_gamma: float = 0.0):
    """Per-cell ``pos_weight * y * (1 - p)**g * -log p + (1 - y) * p**g * -log(1 - p)`` (p = sigmoid(logits));
    ``pos_weight = 1, g = 0`` is the plain BCE-with-logits."""
    import tensorflow as tf

    labels, logits = tf.cast(labels, tf.float32), tf.cast(logits, tf.float32)
    on, off = tf.nn.softplus(-logits), tf.nn.softplus(logits)  # -log p, -log(1 - p)
    if focal_gamma:
        p = tf.sigmoid(logits)
        on, off = on * tf.pow(1.0 - p, focal_gamma), off * tf.pow(p, focal_gamma)
    return pos_weight * labels * on + (1.0 - labels) * off


def pitch_losses(out: Mapping[str, Any], target_mag, activity, roll, known, activity_weight: float,
                 pitch_weight: float, pos_weight: float = 1.0, focal_gamma: float = 0.0) -> dict:
    """Per-example ``mse``, ``bce``, ``pitch_bce`` (the :func:`multipitch_loss` mean) and the masked total
    ``loss`` (module docstring), plus the logits the metrics need (``_``-prefixed). Pure function of
    tensors, so tests check it."""
    import tensorflow as tf

    estimate = tf.cast(out["estimate"], tf.float32)
    mse = tf.reduce_mean(tf.square(estimate - tf.cast(target_mag, tf.float32)), axis=(1, 2, 3))
    logits = tf.cast(out["activity_logits"], tf.float32)
    labels = tf.cast(activity, tf.float32)
    bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=1)
    p_logits = tf.cast(out["pitch_logits"], tf.float32)
    p_bce = tf.reduce_mean(multipitch_loss(roll, p_logits, pos_weight, focal_gamma), axis=(1, 2))
    known = tf.cast(known, tf.float32)
    loss = mse + activity_weight * bce + pitch_weight * known * p_bce
    return {"mse": mse, "bce": bce, "pitch_bce": p_bce * known, "loss": loss,
            "_logits": logits, "_labels": labels, "_pitch_logits": p_logits}


__all__ = ["PitchSeparationConfig", "PitchSeparationTask", "resolve_config", "run_config_dict", "pitch_losses",
           "multipitch_loss", "choose_threshold", "frame_f1", "MODEL"]
