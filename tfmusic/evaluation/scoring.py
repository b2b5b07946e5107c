"""Score one method's estimates on one song: BSS Eval per target, activity against the labels.

Numpy only. Every method (models, oracles, the mixture floor) goes through
:func:`evaluate_estimates`, so IASS, Open-Unmix, IBM, IRM and input-SDR are comparable.

Whole-track rules on top of the per-window ones of :mod:`tfmusic.evaluation.metrics`: a target
whose reference peaks below ``SILENT_PEAK`` (-100 dBFS) over the whole track is absent: it is not
BSS-evaluated (BSS Eval is undefined there, museval raises) and is listed under ``skipped``; its
activity predictions are still scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from tfmusic.evaluation.metrics import (
    SAMPLE_RATE,
    activity_curve,
    activity_scores,
    as_channels_first,
    bss_eval_target,
    is_silent,
)
from tfmusic.evaluation.results import track_json
from tfmusic.evaluation.signals import Difference, all_finite

ACTIVITY_FRAME_SLACK = 4  # centered vs. uncentered STFT framing differ by a few frames

__all__ = ["TrackAudio", "evaluate_estimates"]


@dataclass
class TrackAudio:
    """What one evaluation needs: the mixture and the references of the evaluated targets.

    Signals are arrays or lazy signals (:mod:`tfmusic.evaluation.signals`); with ``scratch`` set,
    long outputs (separated and oracle estimates) are spilled there too instead of held in memory.
    """

    name: str
    mixture: Any  # (C, S) array or lazy signal
    references: dict[str, Any]  # target -> (C, S); absent targets may be missing
    activity_labels: dict[str, np.ndarray] = field(default_factory=dict)  # target -> (frames,)
    # target -> BSS Eval v4 reference model (built once, shared by every method scored on this song)
    reference_models: dict[str, Any] = field(default_factory=dict, repr=False)
    scratch: str | None = None  # local folder for spilled signals (None: keep them in memory)

    def reference_model(self, target: str, reference: np.ndarray, rest: np.ndarray) -> Any:
        from tfmusic.evaluation.bss_v4 import ReferenceModel

        if target not in self.reference_models:
            self.reference_models[target] = ReferenceModel.build(reference, rest)
        return self.reference_models[target]


def evaluate_estimates(track: TrackAudio, estimates: Mapping[str, np.ndarray], *, method: str,
                       mode: str = "v4", win: float | None = 1.0, hop: float | None = None,
                       sample_rate: int = SAMPLE_RATE,
                       activity: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Score one method's estimates on one track; returns the per-track JSON dict.

    Targets in ``estimates`` whose reference is missing or silent (or whose rest is silent) are
    listed under ``skipped``. ``activity`` maps target -> predicted per-frame probabilities, scored
    against ``track.activity_labels`` (trimmed to the common length when they differ by at most
    ``ACTIVITY_FRAME_SLACK`` frames, i.e. centered vs. uncentered STFT framing).
    """
    scores: dict[str, dict[str, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    mixture = as_channels_first(track.mixture, f"{track.name}: mixture")
    for target, estimate in estimates.items():
        ref = track.references.get(target)
        if ref is None:
            skipped[target] = "no reference stem"
            continue
        ref = as_channels_first(ref, f"{track.name}: {target}")
        if ref.shape != mixture.shape:
            raise ValueError(f"{track.name}: reference {target} has shape {ref.shape}, "
                             f"mixture has {mixture.shape}")
        if is_silent(ref):
            skipped[target] = "silent reference (instrument absent)"
            continue
        rest = Difference(mixture, ref)  # read per chunk, never materialized
        if is_silent(rest):
            skipped[target] = "silent rest (target is the whole mixture)"
            continue
        est = as_channels_first(estimate, f"{method}: {target} estimate")
        if not all_finite(est):
            raise ValueError(f"{track.name}: {method} estimate for {target} holds NaN/Inf samples")
        if est.shape[0] != ref.shape[0]:
            raise ValueError(f"{track.name}: {method} estimate for {target} has {est.shape[0]} "
                             f"channels, the reference has {ref.shape[0]}")
        model = track.reference_model(target, ref, rest) if mode == "v4" else None
        scores[target] = bss_eval_target(ref, est, rest, mode=mode, win=win, hop=hop,
                                         sample_rate=sample_rate, model=model)
    act: dict[str, dict[str, Any]] = {}
    for target, probs in (activity or {}).items():
        labels = track.activity_labels.get(target)
        if labels is None:
            continue
        probs, labels = np.ravel(probs), np.ravel(labels)
        if abs(probs.size - labels.size) > ACTIVITY_FRAME_SLACK:
            raise ValueError(f"{track.name}: {method} predicts {probs.size} activity frames for "
                             f"{target}, the labels have {labels.size}")
        n = min(probs.size, labels.size)
        act[target] = {**activity_scores(probs[:n], labels[:n]), **activity_curve(probs[:n], labels[:n])}
    return track_json(track.name, scores, method=method, mode=mode, win=win, hop=hop,
                      skipped=skipped, activity=act, seconds=mixture.shape[-1] / sample_rate)
