"""The IASS+pitch training task: separation MSE + activity BCE + masked multi-pitch BCE.

Why a task of its own: the plain IASS task (:mod:`tfmusic.training.separation`) stays as the
paper specifies; this one trains :class:`~tfmusic.models.iass_pitch.IASSPitch` on the same batches
plus the target's 88-key pitch roll and a per-example "labels known" flag
(``make_dataset(..., pitch=True)``). Everything else (data, STFT, optimizer, input statistics,
activity metrics, summaries) is the IASS task's.

Loss per example: ``mse + activity_weight * bce_activity + pitch_weight * known * bce_pitch``,
``bce_pitch`` the mean BCE-with-logits over frames and keys. Examples without pitch labels (real
datasets, drums, version-1 records: ``known = 0``) add nothing to the pitch term; the per-example
loss is still averaged over the global batch (:func:`scale_loss`). Evaluation adds ``pitch_bce``
(mean over labelled examples) and frame-level ``pitch_precision`` / ``pitch_recall`` / ``pitch_f1``
(logit > 0 against the labels, labelled examples only).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from tfmusic.training.config import ConfigError, deep_merge, from_dict, to_dict
from tfmusic.training.separation import SeparationConfig, SeparationTask

MODEL = "iass_pitch"


@dataclasses.dataclass
class PitchSeparationConfig(SeparationConfig):
    """:class:`SeparationConfig` for IASS+pitch; ``pitch_weight`` weighs the pitch BCE."""

    model: str = MODEL
    pitch_weight: float = 1.0

    def validate(self, source: str = "config") -> None:
        if self.model != MODEL:
            raise ConfigError(f"{source}: model must be {MODEL!r} for the pitch task, got {self.model!r}")
        self.model = "iass"  # the IASS checks apply unchanged (mono default, segment length, weights)
        try:
            super().validate(source)
        finally:
            self.model = MODEL
        if self.pitch_weight < 0:
            raise ConfigError(f"{source}: pitch_weight must be >= 0, got {self.pitch_weight}")


def default_config_dict() -> dict[str, Any]:
    cfg = PitchSeparationConfig()
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
        losses = pitch_losses(out, self.spectrogram(target), activity, roll, known,
                              self.config.activity_weight, self.config.pitch_weight)
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


def pitch_losses(out: Mapping[str, Any], target_mag, activity, roll, known, activity_weight: float,
                 pitch_weight: float) -> dict:
    """Per-example ``mse``, ``bce``, ``pitch_bce`` and the masked total ``loss`` (module docstring),
    plus the logits the metrics need (``_``-prefixed). Pure function of tensors, so tests check it."""
    import tensorflow as tf

    estimate = tf.cast(out["estimate"], tf.float32)
    mse = tf.reduce_mean(tf.square(estimate - tf.cast(target_mag, tf.float32)), axis=(1, 2, 3))
    logits = tf.cast(out["activity_logits"], tf.float32)
    labels = tf.cast(activity, tf.float32)
    bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=1)
    p_logits = tf.cast(out["pitch_logits"], tf.float32)
    p_bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(roll, tf.float32),
                                                                   logits=p_logits), axis=(1, 2))
    known = tf.cast(known, tf.float32)
    loss = mse + activity_weight * bce + pitch_weight * known * p_bce
    return {"mse": mse, "bce": bce, "pitch_bce": p_bce * known, "loss": loss,
            "_logits": logits, "_labels": labels, "_pitch_logits": p_logits}


__all__ = ["PitchSeparationConfig", "PitchSeparationTask", "resolve_config", "run_config_dict", "pitch_losses", "MODEL"]
