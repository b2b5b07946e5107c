"""Separation metrics on numpy arrays: BSS Eval (museval v4 / mir_eval v3), SI-SDR, activity P/R/F1/AUC.

Numpy only (plus museval's numpy/scipy ``metrics`` module for the BSS Eval projections): no
TensorFlow, no Beam, no file I/O, so every number can be checked on constructed arrays.

Conventions:

* Audio is channel-first ``(channels, samples)``, as everywhere in tfmusic.
* **BSS Eval v4** (``mode="v4"``, the SiSEC 2018 / museval default): time-invariant 512-tap
  distortion filters estimated on the whole track, metrics reported on 1 s windows with 1 s hop,
  images variant (SDR, ISR, SIR, SAR).
* **BSS Eval v3** (``mode="v3"``, mir_eval): distortion filters re-estimated in every window and
  the ``bss_eval_sources`` variant, so a whole-signal window (``win=None``) reproduces
  ``mir_eval.separation.bss_eval_sources``. That variant has no ISR (written as NaN).
* **References: target vs rest.** Each target is scored against the two references
  ``(target, rest = mixture - target)``. In the images variant a target's SDR and ISR depend only on
  its own estimate and reference, so they equal museval's joint multi-target numbers; SIR and SAR
  use the rest as the interference subspace. A method's score for one instrument is then
  independent of which other instruments it happens to estimate (one model per instrument).
* **Silence**: a window where the target reference or the rest is all zeros gets NaN for every
  metric (museval's rule). A window where both play but the estimate is all zeros is *scored*, at
  ``bss_v4.SILENT_ESTIMATE_DB`` for SDR/ISR/SI-SDR (museval drops it as NaN, so a method that
  gates a playing instrument off would never pay for it); its SIR/SAR stay NaN (0/0). Every
  method is thus scored on the same frames. A whole-track reference below ``SILENT_PEAK`` is an
  absent instrument (see :mod:`tfmusic.evaluation.scoring`).
* **Speed and memory**: v4 is computed by :mod:`tfmusic.evaluation.bss_v4` (museval's numbers,
  accumulated in chunks, reference correlations shared across methods); v3 calls museval.
* Exact zero distortion gives +inf dB in BSS Eval; museval stores that as NaN, which would drop a
  perfect frame, so tfmusic clips dB values to +-``MAX_DB``.
* **SI-SDR** (Le Roux et al. 2019) is computed on the same windows, channels flattened into one
  vector, and stored as the extra frame metric ``"SI-SDR"``.
"""

from __future__ import annotations

import math
import sys
import types
from typing import Any

import numpy as np

from tfmusic.audio.io import DEFAULT_SAMPLE_RATE as SAMPLE_RATE
from tfmusic.evaluation.signals import chunks, is_signal, museval_silent, to_array

BSS_METRICS = ("SDR", "SIR", "SAR", "ISR")
METRICS = BSS_METRICS + ("SI-SDR",)
MODES = ("v4", "v3")
SILENT_PEAK = 1e-5  # -100 dBFS: below this over a whole track, a target counts as absent
MAX_DB = 1000.0
FILTERS_LEN = 512
ACTIVITY_THRESHOLD = 0.5

__all__ = [
    "ACTIVITY_THRESHOLD", "BSS_METRICS", "FILTERS_LEN", "MAX_DB", "METRICS", "MODES", "SAMPLE_RATE",
    "SILENT_PEAK", "activity_curve", "activity_scores", "as_channels_first", "bss_eval_target",
    "fit_length", "frame_slices", "is_silent", "museval_metrics", "museval_version", "roc_auc", "si_sdr",
]


# --------------------------------------------------------------------------------------------
# museval import (the one place that knows about the musdb/stempeg/ffmpeg import chain)
# --------------------------------------------------------------------------------------------

def museval_metrics() -> types.ModuleType:
    """Return ``museval.metrics`` without needing ffmpeg.

    ``import museval`` imports ``musdb``, which imports ``stempeg``, which raises RuntimeError when
    ffmpeg is missing. ``museval.metrics`` itself needs only numpy/scipy, so when the real musdb
    cannot be imported a placeholder module named ``musdb`` is registered first.
    """
    if "museval.metrics" in sys.modules:
        return sys.modules["museval.metrics"]
    if "musdb" not in sys.modules:
        try:
            import musdb  # noqa: F401  (works when ffmpeg is installed)
        except (ImportError, RuntimeError):
            placeholder = types.ModuleType("musdb")
            placeholder.__doc__ = "placeholder registered by tfmusic: musdb/stempeg need ffmpeg"
            sys.modules["musdb"] = placeholder
    import museval.metrics

    return museval.metrics


def museval_version() -> str:
    museval_metrics()
    from museval.version import _version

    return str(_version)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def as_channels_first(x: np.ndarray, name: str) -> np.ndarray:
    """``(samples,)`` or ``(channels, samples)`` -> float ``(channels, samples)``: float32 stays
    float32 (audio read from files; halves a long song's memory, sums run in float64 anyway),
    anything else becomes float64. A lazy signal (:mod:`tfmusic.evaluation.signals`: read slice by
    slice) is passed through as it is."""
    if is_signal(x):
        return x
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name}: expected (channels, samples), got shape {x.shape}")
    return x


def fit_length(estimate: np.ndarray, n_samples: int) -> np.ndarray:
    """Zero-pad or truncate ``(channels, samples)`` to ``n_samples`` (museval's pad_or_truncate)."""
    if estimate.shape[-1] == n_samples:
        return estimate
    estimate = to_array(estimate)
    if estimate.shape[-1] >= n_samples:
        return estimate[..., :n_samples]
    pad = [(0, 0)] * (estimate.ndim - 1) + [(0, n_samples - estimate.shape[-1])]
    return np.pad(estimate, pad)


def is_silent(x: np.ndarray, peak: float = SILENT_PEAK) -> bool:
    """True when a whole signal peaks below ``peak`` (an absent instrument); read chunk by chunk."""
    return not any(np.any(np.abs(c) >= peak) for c in chunks(x))


def _clip_db(values: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(values, dtype=np.float64), -MAX_DB, MAX_DB)


def frame_slices(n_samples: int, win: int, hop: int) -> list[slice]:
    """museval's framing: windows of ``win`` samples every ``hop``; one window if win >= length."""
    if win >= n_samples:
        return [slice(0, n_samples)]
    n = int(math.floor((n_samples - win + hop) / hop))
    return [slice(i * hop, min(i * hop + win, n_samples)) for i in range(n)]


# --------------------------------------------------------------------------------------------
# SI-SDR and BSS Eval
# --------------------------------------------------------------------------------------------

def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (all channels as one vector).

    Rescaling the estimate leaves it unchanged. NaN when reference or estimate is all zeros;
    the denominator is floored at float64 resolution so a perfect estimate stays finite (~156 dB).
    """
    s = np.asarray(reference, dtype=np.float64).ravel()
    e = np.asarray(estimate, dtype=np.float64).ravel()
    if s.shape != e.shape:
        raise ValueError(f"si_sdr: reference {s.shape} and estimate {e.shape} differ in size")
    ss = float(np.dot(s, s))
    if ss == 0.0 or not np.any(e):
        return float("nan")
    target = (np.dot(e, s) / ss) * s
    noise = e - target
    num = float(np.dot(target, target))
    den = max(float(np.dot(noise, noise)), np.finfo(np.float64).eps * max(num, ss))
    if num == 0.0:
        return -MAX_DB
    return float(np.clip(10.0 * np.log10(num / den), -MAX_DB, MAX_DB))


def bss_eval_target(
    reference: np.ndarray,
    estimate: np.ndarray,
    rest: np.ndarray,
    *,
    mode: str = "v4",
    win: float | None = 1.0,
    hop: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    model: Any = None,
) -> dict[str, np.ndarray]:
    """Framewise SDR/SIR/SAR/ISR/SI-SDR of one target estimate, scored against (target, rest).

    ``reference``, ``estimate`` and ``rest`` are ``(channels, samples)``; the estimate is padded or
    truncated to the reference length. ``win``/``hop`` are in seconds (``win=None``: one window
    over the whole signal; ``hop`` defaults to ``win``). Returns ``{metric: (frames,)}`` arrays with
    NaN for silent windows, and :data:`~tfmusic.evaluation.bss_v4.SILENT_ESTIMATE_DB` for SDR, ISR
    and SI-SDR where the target and rest play but the estimate is silent. The reference and rest
    must not be silent over the whole signal (check with :func:`is_silent`). v4 runs
    :mod:`tfmusic.evaluation.bss_v4` (museval's numbers in bounded memory); ``model``, a
    :class:`~tfmusic.evaluation.bss_v4.ReferenceModel` of these references, saves rebuilding it.
    """
    from tfmusic.evaluation import bss_v4

    if mode not in MODES:
        raise ValueError(f"unknown BSS Eval mode {mode!r}; expected one of {MODES}")
    reference = as_channels_first(reference, "reference")
    rest = as_channels_first(rest, "rest")
    estimate = fit_length(as_channels_first(estimate, "estimate"), reference.shape[-1])
    if reference.shape != rest.shape or reference.shape != estimate.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, rest {rest.shape}, "
                         f"estimate {estimate.shape} (channels must match)")
    n = reference.shape[-1]
    win_n = n if win is None or win <= 0 else int(round(win * sample_rate))
    hop_n = win_n if hop is None or hop <= 0 else int(round(hop * sample_rate))
    slices = frame_slices(n, win_n, hop_n)
    if museval_silent(reference) or museval_silent(rest):
        raise ValueError("reference or rest is silent over the whole signal; BSS Eval is undefined")
    if mode == "v4":
        model = model if model is not None else bss_v4.ReferenceModel.build(reference, rest, FILTERS_LEN)
        out = {k: _clip_db(v) for k, v in bss_v4.bss_eval_v4(model, reference, rest, estimate, win_n, hop_n).items()}
    else:
        out = {m: np.full(len(slices), np.nan) for m in BSS_METRICS}
        if not museval_silent(estimate):  # museval raises on a silent estimate
            metrics = museval_metrics()
            reference, rest, estimate = (to_array(x) for x in (reference, rest, estimate))
            refs = np.stack([reference.T, rest.T])
            # The rest's estimate only matters for museval's per-window silence gate (metrics of
            # source 0 depend on estimate 0 alone), so the rest reference stands in for it.
            sdr, _, sir, sar, _ = metrics.bss_eval(
                refs, np.stack([estimate.T, rest.T]), window=win_n, hop=hop_n, compute_permutation=False,
                filters_len=FILTERS_LEN, framewise_filters=True, bsseval_sources_version=True)
            out["SDR"], out["SIR"], out["SAR"] = (_clip_db(v[0]) for v in (sdr, sir, sar))
        for i, sl in enumerate(slices):  # the same silent-estimate rule as v4
            if (museval_silent(estimate[:, sl]) and not museval_silent(reference[:, sl])
                    and not museval_silent(rest[:, sl])):
                out["SDR"][i] = bss_v4.SILENT_ESTIMATE_DB
        out["ISR"] = np.full(len(slices), np.nan)  # the sources variant has no image metric
    out["SI-SDR"] = np.full(len(slices), np.nan)
    for i, sl in enumerate(slices):
        if museval_silent(reference[:, sl]) or museval_silent(rest[:, sl]):
            continue
        out["SI-SDR"][i] = (bss_v4.SILENT_ESTIMATE_DB if museval_silent(estimate[:, sl])
                            else si_sdr(reference[:, sl], estimate[:, sl]))
    return {m: out[m] for m in METRICS}


# --------------------------------------------------------------------------------------------
# Activity detection
# --------------------------------------------------------------------------------------------

def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of boolean ``labels`` ranked by ``scores`` (ties count one half), in numpy.

    The Mann-Whitney statistic with average ranks: equal to ``sklearn.metrics.roc_auc_score``.
    NaN when the labels hold one class only.
    """
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # average rank (1-based) of each run of equal scores
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    run_rank = first + (counts + 1) / 2.0
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, counts)
    u = float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def activity_scores(probabilities: np.ndarray, labels: np.ndarray,
                    threshold: float = ACTIVITY_THRESHOLD) -> dict[str, Any]:
    """Frame-level precision, recall, F1 (prediction = p >= threshold), ROC-AUC, and ``bleed_gated``:
    the share of frames where the target is silent that the prediction gates off (IASS's gate then
    removes the bleed there).

    ``labels`` may be confidences; they are binarized at 0.5 (the IASS training convention).
    When nothing is active and nothing is predicted, P = R = F1 = 1 (perfect agreement on absence);
    other 0/0 ratios are 0. ROC-AUC is NaN when the labels hold one class only (undefined).
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel() >= 0.5
    if p.shape != y.shape:
        raise ValueError(f"activity: {p.size} predicted frames but {y.size} label frames")
    if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
        raise ValueError("activity: predictions must be probabilities in [0, 1]")
    pred = p >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    if tp + fp + fn == 0:
        precision = recall = f1 = 1.0
    else:
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn)
    silent = int(np.sum(~y))
    # IASS's gate zeroes the estimate where it predicts "inactive": on frames where the target is
    # silent, that removes whatever bleed the mask let through.
    gated_silent = float(np.sum(~pred & ~y) / silent) if silent else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "auc": roc_auc(y, p),
            "frames": int(p.size), "active_frames": int(y.sum()), "bleed_gated": gated_silent}


def activity_curve(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Probabilities and labels as rounded lists (stored per track, used for pooled scores/plots)."""
    return {"probability": [round(float(v), 4) for v in np.ravel(probabilities)],
            "label": [round(float(v), 4) for v in np.ravel(labels)]}
