"""Separation evaluation: BSS Eval (museval v4 / mir_eval v3), SI-SDR, oracle baselines, activity.

Why this module exists: every separation number in tfmusic (models, oracles, the mixture floor)
comes from the same code path, so IASS, Open-Unmix, IBM, IRM and input-SDR are comparable.

Conventions (see also ``docs`` of each function):

* Audio is channel-first ``(channels, samples)`` at 44.1 kHz, as everywhere in tfmusic.
* **BSS Eval v4** (``mode="v4"``, the SiSEC 2018 / museval default): time-invariant 512-tap
  distortion filters estimated on the whole track, metrics reported on 1 s windows with 1 s hop,
  images variant (SDR, ISR, SIR, SAR). Aggregation: median over a track's frames, then median over
  tracks (NaN frames ignored), exactly as ``museval.EvalStore``.
* **BSS Eval v3** (``mode="v3"``, mir_eval): distortion filters re-estimated in every window and
  the ``bss_eval_sources`` variant, so a whole-signal window (``win=None``) reproduces
  ``mir_eval.separation.bss_eval_sources``. That variant has no ISR (written as NaN).
* **References: target vs rest.** Each target is scored against the two references
  ``(target, rest = mixture - target)``. In the images variant a target's SDR and ISR depend only on
  its own estimate and reference, so they equal museval's joint multi-target numbers; SIR and SAR
  use the rest as the interference subspace. This keeps a method's score for one instrument
  independent of which other instruments it happens to estimate (one model per instrument).
* **Silence** (museval's rules, plus one for whole tracks): a window where the target reference, the
  rest or the estimate is all zeros gets NaN for every metric and is ignored by the medians. A
  target whose reference peaks below ``SILENT_PEAK`` (-100 dBFS) over the whole track is absent:
  it is not BSS-evaluated (BSS Eval is undefined, museval raises) and is listed under ``skipped``;
  its activity predictions are still scored. An estimate that is all zeros yields all-NaN frames
  (museval would raise).
* Exact zero distortion gives +inf dB in BSS Eval; museval stores that as NaN, which would drop a
  perfect frame, so tfmusic clips dB values to +-``MAX_DB``.
* **SI-SDR** (Le Roux et al. 2019) is computed on the same windows, channels flattened into one
  vector, and stored as the extra frame metric ``"SI-SDR"``.

Per-track results are museval-compatible JSON (``targets[].frames[].metrics`` with SDR/SIR/SAR/ISR,
``time``, ``duration``, ``museval_version``), written to ``<out>/<method>/<split>/<track>.json`` so
``museval.EvalStore().add_eval_dir(<out>/<method>)`` loads them when the split is ``test``.
"""

from __future__ import annotations

import json
import math
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from tfmusic.audio.io import DEFAULT_SAMPLE_RATE as SAMPLE_RATE
BSS_METRICS = ("SDR", "SIR", "SAR", "ISR")
METRICS = BSS_METRICS + ("SI-SDR",)
MODES = ("v4", "v3")
SILENT_PEAK = 1e-5  # -100 dBFS: below this over a whole track, a target counts as absent
MAX_DB = 1000.0
FILTERS_LEN = 512
ORACLES = ("ibm", "irm", "mix")
ORACLE_LABELS = {"ibm": "IBM", "irm": "IRM", "mix": "input-SDR"}
ACTIVITY_THRESHOLD = 0.5


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
# Metrics
# --------------------------------------------------------------------------------------------

def _as_channels_first(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name}: expected (channels, samples), got shape {x.shape}")
    return x


def fit_length(estimate: np.ndarray, n_samples: int) -> np.ndarray:
    """Zero-pad or truncate ``(channels, samples)`` to ``n_samples`` (museval's pad_or_truncate)."""
    if estimate.shape[-1] >= n_samples:
        return estimate[..., :n_samples]
    pad = [(0, 0)] * (estimate.ndim - 1) + [(0, n_samples - estimate.shape[-1])]
    return np.pad(estimate, pad)


def is_silent(x: np.ndarray, peak: float = SILENT_PEAK) -> bool:
    """True when a whole signal peaks below ``peak`` (an absent instrument)."""
    return not np.any(np.abs(x) >= peak)


def _museval_silent(x: np.ndarray) -> bool:
    """museval's own per-window silence test: the channel sum is zero at every sample."""
    return not np.any(np.sum(x, axis=0))


def _clip_db(values: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(values, dtype=np.float64), -MAX_DB, MAX_DB)


def frame_slices(n_samples: int, win: int, hop: int) -> list[slice]:
    """museval's framing: windows of ``win`` samples every ``hop``; one window if win >= length."""
    if win >= n_samples:
        return [slice(0, n_samples)]
    n = int(math.floor((n_samples - win + hop) / hop))
    return [slice(i * hop, min(i * hop + win, n_samples)) for i in range(n)]


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
) -> dict[str, np.ndarray]:
    """Framewise SDR/SIR/SAR/ISR/SI-SDR of one target estimate, scored against (target, rest).

    ``reference``, ``estimate`` and ``rest`` are ``(channels, samples)``; the estimate is padded or
    truncated to the reference length. ``win``/``hop`` are in seconds (``win=None``: one window
    over the whole signal; ``hop`` defaults to ``win``). Returns ``{metric: (frames,)}`` arrays with
    NaN for silent windows. The reference and rest must not be silent over the whole signal
    (check with :func:`is_silent`; such targets are skipped by :func:`evaluate_track`).
    """
    if mode not in MODES:
        raise ValueError(f"unknown BSS Eval mode {mode!r}; expected one of {MODES}")
    reference = _as_channels_first(reference, "reference")
    rest = _as_channels_first(rest, "rest")
    estimate = fit_length(_as_channels_first(estimate, "estimate"), reference.shape[-1])
    if reference.shape != rest.shape or reference.shape != estimate.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, rest {rest.shape}, "
                         f"estimate {estimate.shape} (channels must match)")
    n = reference.shape[-1]
    win_n = n if win is None or win <= 0 else int(round(win * sample_rate))
    hop_n = win_n if hop is None or hop <= 0 else int(round(hop * sample_rate))
    slices = frame_slices(n, win_n, hop_n)
    out = {m: np.full(len(slices), np.nan) for m in METRICS}
    if _museval_silent(reference) or _museval_silent(rest):
        raise ValueError("reference or rest is silent over the whole signal; BSS Eval is undefined")
    if _museval_silent(estimate):
        return out  # museval raises here; every window is silent, so every frame is NaN
    metrics = museval_metrics()
    refs = np.stack([reference.T, rest.T])
    # The rest's estimate only matters for museval's per-window silence gate (metrics of source 0
    # depend on estimate 0 alone), so the rest reference stands in for it.
    ests = np.stack([estimate.T, rest.T])
    sdr, isr, sir, sar, _ = metrics.bss_eval(
        refs, ests, window=win_n, hop=hop_n, compute_permutation=False, filters_len=FILTERS_LEN,
        framewise_filters=(mode == "v3"), bsseval_sources_version=(mode == "v3"))
    out["SDR"], out["ISR"], out["SIR"], out["SAR"] = (_clip_db(v[0]) for v in (sdr, isr, sir, sar))
    if mode == "v3":
        out["ISR"] = np.full(len(slices), np.nan)  # the sources variant has no image metric
    for i, sl in enumerate(slices):
        if not (_museval_silent(reference[:, sl]) or _museval_silent(rest[:, sl])
                or _museval_silent(estimate[:, sl])):
            out["SI-SDR"][i] = si_sdr(reference[:, sl], estimate[:, sl])
    return out


# --------------------------------------------------------------------------------------------
# Activity detection
# --------------------------------------------------------------------------------------------

def activity_scores(probabilities: np.ndarray, labels: np.ndarray,
                    threshold: float = ACTIVITY_THRESHOLD) -> dict[str, float]:
    """Frame-level precision, recall, F1 (prediction = p >= threshold) and ROC-AUC.

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
    if y.all() or not y.any():
        auc = float("nan")
    else:
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y, p))
    return {"precision": precision, "recall": recall, "f1": f1, "auc": auc,
            "frames": int(p.size), "active_frames": int(y.sum())}


def activity_curve(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Probabilities and labels as rounded lists (stored per track, used for pooled scores/plots)."""
    return {"probability": [round(float(v), 4) for v in np.ravel(probabilities)],
            "label": [round(float(v), 4) for v in np.ravel(labels)]}


# --------------------------------------------------------------------------------------------
# Oracle baselines
# --------------------------------------------------------------------------------------------

def _stft_pair(center: bool = True):
    """tfmusic's STFT/iSTFT pair; the rfft method (same spectra, not ONNX-exportable) for speed."""
    from tfmusic.audio.stft import ISTFT, STFT

    return STFT(center=center, method="fft"), ISTFT(center=center, method="fft")


def oracle_estimate(mixture: np.ndarray, reference: np.ndarray, kind: str,
                    transforms: tuple[Callable, Callable] | None = None) -> np.ndarray:
    """Oracle estimate of one target from its true reference (an upper bound or the floor).

    ``ibm``: ideal binary mask, 1 where the target magnitude exceeds the rest's
    (rest = mixture - target); ``irm``: ideal ratio mask |S|^2 / (|S|^2 + |R|^2) (the Wiener-like
    power mask, SiSEC's "IRM2", the stronger of the two usual ratio masks); both applied to the
    complex mixture STFT (tfmusic's one STFT, n_fft 4096, hop 1024) and inverted. ``mix``: the
    mixture itself (input-SDR). Shapes ``(channels, samples)``.
    """
    mixture = _as_channels_first(mixture, "mixture").astype(np.float32)
    reference = _as_channels_first(reference, "reference").astype(np.float32)
    if kind == "mix":
        return mixture.copy()
    if kind not in ("ibm", "irm"):
        raise ValueError(f"unknown oracle {kind!r}; expected one of {ORACLES}")
    if mixture.shape != reference.shape:
        raise ValueError(f"oracle: mixture {mixture.shape} and reference {reference.shape} differ")
    stft, istft = transforms or _stft_pair()
    re, im = stft(np.stack([mixture, reference]))
    re, im = np.asarray(re), np.asarray(im)
    mag_t = np.hypot(re[1], im[1])
    mag_r = np.hypot(re[0] - re[1], im[0] - im[1])
    if kind == "ibm":
        mask = (mag_t > mag_r).astype(np.float32)
    else:
        pow_t, pow_r = np.square(mag_t), np.square(mag_r)
        mask = (pow_t / np.maximum(pow_t + pow_r, 1e-20)).astype(np.float32)
    out = istft(re[0:1] * mask[None], im[0:1] * mask[None], length=mixture.shape[-1])
    return fit_length(np.asarray(out)[0], mixture.shape[-1])


# --------------------------------------------------------------------------------------------
# Per-track evaluation and museval-compatible JSON
# --------------------------------------------------------------------------------------------

def _q(value: float) -> float:
    """museval quantizes to 1e-5; NaN stays NaN (written as the JSON token NaN, like museval)."""
    return float("nan") if not np.isfinite(value) else round(float(value), 5)


def track_json(track_name: str, scores: Mapping[str, Mapping[str, np.ndarray]], *, method: str,
               mode: str, win: float | None, hop: float | None,
               skipped: Mapping[str, str] | None = None,
               activity: Mapping[str, Mapping[str, Any]] | None = None,
               seconds: float | None = None,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """museval TrackStore-compatible dict (``targets -> frames -> metrics``) plus tfmusic keys.

    ``win``/``hop`` in seconds; ``win=None`` means one whole-track window of ``seconds``.
    """
    win_s = win if win and win > 0 else None
    hop_s = (hop if hop and hop > 0 else win_s)
    targets = []
    for name, metrics in scores.items():
        n = len(metrics["SDR"])
        frames = [{"time": (i * hop_s if hop_s else 0.0), "duration": (win_s or seconds or 0.0),
                   "metrics": {m: _q(metrics[m][i]) for m in METRICS}} for i in range(n)]
        targets.append({"name": name, "frames": frames})
    doc: dict[str, Any] = {
        "targets": targets,
        "museval_version": museval_version(),
        "track": track_name,
        "method": method,
        "mode": mode,
        "win": win_s,
        "hop": hop_s,
        "skipped": [{"name": k, "reason": v} for k, v in (skipped or {}).items()],
        "activity": dict(activity or {}),
        "seconds": seconds,
    }
    if extra:
        doc.update(extra)
    return doc


@dataclass
class TrackAudio:
    """What one evaluation needs: the mixture and the references of the evaluated targets."""

    name: str
    mixture: np.ndarray  # (C, S)
    references: dict[str, np.ndarray]  # target -> (C, S); absent targets may be missing
    activity_labels: dict[str, np.ndarray] = field(default_factory=dict)  # target -> (frames,)


def evaluate_estimates(track: TrackAudio, estimates: Mapping[str, np.ndarray], *, method: str,
                       mode: str = "v4", win: float | None = 1.0, hop: float | None = None,
                       sample_rate: int = SAMPLE_RATE,
                       activity: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Score one method's estimates on one track; returns the per-track JSON dict.

    Targets in ``estimates`` whose reference is missing or silent (or whose rest is silent) are
    listed under ``skipped``. ``activity`` maps target -> predicted per-frame probabilities, scored
    against ``track.activity_labels`` (trimmed to the common length when they differ by at most
    4 frames, i.e. centered vs. uncentered STFT framing).
    """
    scores: dict[str, dict[str, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    mixture = _as_channels_first(track.mixture, f"{track.name}: mixture")
    for target, estimate in estimates.items():
        ref = track.references.get(target)
        if ref is None:
            skipped[target] = "no reference stem"
            continue
        ref = _as_channels_first(ref, f"{track.name}: {target}")
        if ref.shape != mixture.shape:
            raise ValueError(f"{track.name}: reference {target} has shape {ref.shape}, "
                             f"mixture has {mixture.shape}")
        if is_silent(ref):
            skipped[target] = "silent reference (instrument absent)"
            continue
        rest = mixture - ref
        if is_silent(rest):
            skipped[target] = "silent rest (target is the whole mixture)"
            continue
        est = _as_channels_first(estimate, f"{method}: {target} estimate")
        if not np.all(np.isfinite(est)):
            raise ValueError(f"{track.name}: {method} estimate for {target} holds NaN/Inf samples")
        if est.shape[0] != ref.shape[0]:
            raise ValueError(f"{track.name}: {method} estimate for {target} has {est.shape[0]} "
                             f"channels, the reference has {ref.shape[0]}")
        scores[target] = bss_eval_target(ref, est, rest, mode=mode, win=win, hop=hop,
                                         sample_rate=sample_rate)
    act: dict[str, dict[str, Any]] = {}
    for target, probs in (activity or {}).items():
        labels = track.activity_labels.get(target)
        if labels is None:
            continue
        probs, labels = np.ravel(probs), np.ravel(labels)
        if abs(probs.size - labels.size) > 4:
            raise ValueError(f"{track.name}: {method} predicts {probs.size} activity frames for "
                             f"{target}, the labels have {labels.size}")
        n = min(probs.size, labels.size)
        act[target] = {**activity_scores(probs[:n], labels[:n]), **activity_curve(probs[:n], labels[:n])}
    return track_json(track.name, scores, method=method, mode=mode, win=win, hop=hop,
                      skipped=skipped, activity=act, seconds=mixture.shape[-1] / sample_rate)


def evaluate_oracles(track: TrackAudio, targets: Iterable[str], oracles: Sequence[str], *,
                     mode: str = "v4", win: float | None = 1.0, hop: float | None = None,
                     sample_rate: int = SAMPLE_RATE,
                     transforms: tuple[Callable, Callable] | None = None) -> dict[str, dict[str, Any]]:
    """Per-track JSON for each oracle baseline (keys: ORACLE_LABELS values)."""
    out = {}
    for kind in oracles:
        if kind not in ORACLES:
            raise ValueError(f"unknown oracle {kind!r}; expected some of {ORACLES}")
        if kind != "mix" and transforms is None:
            transforms = _stft_pair()
        estimates = {}
        for target in targets:
            ref = track.references.get(target)
            if ref is None or is_silent(ref):
                estimates[target] = np.zeros_like(track.mixture)  # skipped by evaluate_estimates
                continue
            estimates[target] = oracle_estimate(track.mixture, ref, kind, transforms)
        out[ORACLE_LABELS[kind]] = evaluate_estimates(track, estimates, method=ORACLE_LABELS[kind],
                                                      mode=mode, win=win, hop=hop,
                                                      sample_rate=sample_rate)
    return out


# --------------------------------------------------------------------------------------------
# Storage and aggregation
# --------------------------------------------------------------------------------------------

def safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)
    return keep.strip(".") or "unnamed"


def write_track_json(doc: Mapping[str, Any], out_dir: Path, split: str) -> Path:
    """Write ``<out>/<method>/<split>/<track>.json`` (museval's directory layout)."""
    path = Path(out_dir) / safe_name(doc["method"]) / safe_name(split) / f"{safe_name(doc['track'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, allow_nan=True))
    return path


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    """Every per-track JSON under ``results_dir`` (``<method>/<split>/<track>.json``)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(str(results_dir))
    docs = []
    for path in sorted(results_dir.glob("*/*/*.json")):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(doc, dict) or "targets" not in doc or "method" not in doc:
            raise ValueError(f"{path}: not a tfmusic per-track result (missing 'targets'/'method')")
        doc.setdefault("split", path.parent.name)
        docs.append(doc)
    return docs


def _nanmedian(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(np.median(arr)) if arr.size else float("nan")


def track_medians(doc: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """target -> metric -> median over this track's frames (NaN frames ignored)."""
    return {t["name"]: {m: _nanmedian([f["metrics"].get(m, float("nan")) for f in t["frames"]])
                        for m in METRICS}
            for t in doc["targets"]}


def aggregate(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Median over frames, then over tracks, per method/target/metric; pooled activity scores.

    Returns ``{"bss": {method: {target: {metric: value, "tracks": n}}},
    "per_track": {method: {target: {track: {metric: value}}}},
    "activity": {method: {target: {precision, recall, f1, auc (pooled over all frames), ...}}},
    "skipped": {method: {target: n_tracks}}}``.
    """
    per_track: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    pooled: dict[str, dict[str, tuple[list, list]]] = {}
    skipped: dict[str, dict[str, int]] = {}
    for doc in docs:
        method = doc["method"]
        for target, med in track_medians(doc).items():
            per_track.setdefault(method, {}).setdefault(target, {})[doc["track"]] = med
        for item in doc.get("skipped", []):
            counts = skipped.setdefault(method, {})
            counts[item["name"]] = counts.get(item["name"], 0) + 1
        for target, act in doc.get("activity", {}).items():
            probs, labels = pooled.setdefault(method, {}).setdefault(target, ([], []))
            probs.extend(act["probability"])
            labels.extend(act["label"])
    bss: dict[str, dict[str, dict[str, float]]] = {}
    for method, targets in per_track.items():
        for target, tracks in targets.items():
            row = {m: _nanmedian([v[m] for v in tracks.values()]) for m in METRICS}
            row["tracks"] = sum(1 for v in tracks.values() if np.isfinite(v["SDR"]))
            bss.setdefault(method, {})[target] = row
    activity = {method: {target: activity_scores(p, y) for target, (p, y) in targets.items()}
                for method, targets in pooled.items()}
    return {"bss": bss, "per_track": per_track, "activity": activity, "skipped": skipped}


def method_order(methods: Iterable[str]) -> list[str]:
    """Models first (alphabetical), then IRM, IBM, input-SDR: the order of the paper's tables."""
    oracle = [ORACLE_LABELS[k] for k in ("irm", "ibm", "mix")]
    methods = list(dict.fromkeys(methods))
    return sorted(m for m in methods if m not in oracle) + [m for m in oracle if m in methods]


def markdown_table(summary: Mapping[str, Any], metrics: Sequence[str] = METRICS) -> str:
    """Aggregate BSS table: one row per (target, method), medians over frames then tracks."""
    lines = ["| target | method | " + " | ".join(metrics) + " | tracks |",
             "|---|---|" + "---|" * (len(metrics) + 1)]
    bss = summary["bss"]
    targets = sorted({t for rows in bss.values() for t in rows})
    for target in targets:
        for method in method_order(bss):
            row = bss[method].get(target)
            if row is None:
                continue
            cells = ["" if not np.isfinite(row[m]) else f"{row[m]:.2f}" for m in metrics]
            lines.append(f"| {target} | {method} | " + " | ".join(cells) + f" | {row['tracks']} |")
    return "\n".join(lines) + "\n"


def activity_table(summary: Mapping[str, Any]) -> str:
    """Pooled frame-level activity detection table (methods that predict activity)."""
    lines = ["| target | method | precision | recall | F1 | ROC-AUC | frames | active |",
             "|---|---|---|---|---|---|---|---|"]
    for method, targets in sorted(summary["activity"].items()):
        for target, s in sorted(targets.items()):
            auc = "" if not np.isfinite(s["auc"]) else f"{s['auc']:.3f}"
            lines.append(f"| {target} | {method} | {s['precision']:.3f} | {s['recall']:.3f} | "
                         f"{s['f1']:.3f} | {auc} | {s['frames']} | {s['active_frames']} |")
    return "\n".join(lines) + "\n"


def write_summary(results_dir: Path) -> dict[str, Any]:
    """Aggregate every per-track JSON under ``results_dir`` into summary.json and summary.md."""
    results_dir = Path(results_dir)
    summary = aggregate(load_results(results_dir))
    (results_dir / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=True))
    text = ["# Separation results", "",
            "BSS Eval medians over 1 s frames, then over tracks (NaN frames ignored).", "",
            markdown_table(summary)]
    if summary["activity"]:
        text += ["## Activity detection (frames pooled over tracks)", "", activity_table(summary)]
    (results_dir / "summary.md").write_text("\n".join(text))
    return summary


# --------------------------------------------------------------------------------------------
# Dataset driver: methods x held-out tracks (in-process loop or one Beam element per track)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MethodSpec:
    """A separation method to evaluate: a display name and its model files/run dirs."""

    name: str
    paths: tuple[str, ...]


def parse_method(text: str) -> MethodSpec:
    """``[NAME=]PATH[,PATH...]`` -> MethodSpec; without NAME the first path's folder name is used."""
    name, sep_, paths = text.partition("=")
    if not sep_:
        name, paths = "", text
    items = tuple(p.strip() for p in paths.split(",") if p.strip())
    if not items:
        raise ValueError(f"--model {text!r}: no model path given (expected [NAME=]PATH[,PATH...])")
    for p in items:
        if not Path(p).exists():
            raise FileNotFoundError(p)
    if not name:
        name = Path(items[0]).resolve().name
        if Path(items[0]).suffix == ".keras":
            name = Path(items[0]).stem
    return MethodSpec(name=name.strip(), paths=items)


@dataclass
class EvaluationConfig:
    """Everything a worker needs to evaluate one track (picklable, sent to Beam workers)."""

    methods: list[MethodSpec] = field(default_factory=list)
    oracles: list[str] = field(default_factory=lambda: list(ORACLES))
    targets: list[str] | None = None  # None: the targets the models estimate
    mode: str = "v4"
    win: float | None = 1.0
    hop: float | None = None
    max_seconds: float | None = None  # crop every track (fast demos); None: whole tracks
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown BSS Eval mode {self.mode!r}; expected one of {MODES}")
        bad = [o for o in self.oracles if o not in ORACLES]
        if bad:
            raise ValueError(f"unknown oracle(s) {bad}; expected some of {list(ORACLES)}")
        names = [m.name for m in self.methods] + [ORACLE_LABELS[o] for o in self.oracles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"method names must be unique, got {dupes} more than once (use NAME=PATH)")
        if not self.methods and not self.targets:
            raise ValueError("nothing to evaluate: give at least one model or the targets for the oracles")


def _track_audio(track: Any, config: EvaluationConfig, targets: Sequence[str]) -> TrackAudio:
    """Load a dataset Track (``load(sample_rate) -> (mixture, stems)``) into a TrackAudio."""
    from tfmusic.data.stems.activity import song_confidence

    mixture, stems = track.load(config.sample_rate)
    if config.max_seconds:
        n = int(config.max_seconds * config.sample_rate)
        mixture = mixture[:, :n]
        stems = {k: v[:, :n] for k, v in stems.items()}
    name = getattr(track, "name", str(track))
    refs = {t: stems[t] for t in targets if t in stems}
    labels = {t: song_confidence(refs.get(t, np.zeros_like(mixture))) for t in targets}
    return TrackAudio(name=name, mixture=mixture, references=refs, activity_labels=labels)


class TrackEvaluator:
    """Picklable callable: one dataset track -> per-method result documents.

    Models are loaded lazily, once per worker process, so the same object serves the in-process
    loop and a Beam ``Map`` (one track per element: museval holds several copies of a track).
    Errors are caught per track and returned as ``status="failed"`` with the reason.
    """

    def __init__(self, config: EvaluationConfig) -> None:
        self.config = config
        self._models: dict[str, Any] | None = None

    def __getstate__(self) -> dict:
        return {"config": self.config, "_models": None}

    def models(self) -> dict[str, tuple[Callable, list[str]]]:
        """method name -> (chunk function, targets), loaded once per process."""
        if self._models is None:
            from tfmusic.audio.chunking import graph_chunk_fn
            from tfmusic.models.separator import load_separator

            self._models = {}
            for m in self.config.methods:
                try:
                    # in process: the FFT STFT gives the same spectra ~20x faster than the DFT basis
                    separator = load_separator(list(m.paths), stft_method="fft")
                except (ValueError, FileNotFoundError) as err:
                    raise ValueError(f"method {m.name!r}: {err}") from err
                self._models[m.name] = (graph_chunk_fn(separator, reduce_retracing=True),
                                        list(separator.target_names))
        return self._models

    def targets(self) -> list[str]:
        if self.config.targets:
            return list(self.config.targets)
        found: list[str] = []
        for _, names in self.models().values():
            found += [t for t in names if t not in found]
        return found

    def __call__(self, track: Any) -> dict[str, Any]:
        name = getattr(track, "name", str(track))
        try:
            return {"track": name, "status": "ok", "docs": self.evaluate(track)}
        except Exception as err:  # one bad track must not stop the job; reported in the manifest
            return {"track": name, "status": "failed", "error": f"{type(err).__name__}: {err}", "docs": []}

    def evaluate(self, track: Any) -> list[dict[str, Any]]:
        cfg = self.config
        targets = self.targets()
        audio = _track_audio(track, cfg, targets)
        kw = dict(mode=cfg.mode, win=cfg.win, hop=cfg.hop, sample_rate=cfg.sample_rate)
        docs = []
        for method, (separate_chunk, names) in self.models().items():
            estimates, activity = separate_track(separate_chunk, names, audio.mixture)
            docs.append(evaluate_estimates(audio, {t: estimates[t] for t in targets if t in estimates},
                                           method=method, activity=activity, **kw))
        docs.extend(evaluate_oracles(audio, targets, cfg.oracles, **kw).values())
        return docs


CHUNK_SECONDS = 30.0  # as `tfmusic separate`: bounds memory on long songs
OVERLAP_SECONDS = 1.0


def separate_track(separate_chunk: Callable[[np.ndarray], Mapping[str, np.ndarray]], targets: Sequence[str],
                   mixture: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Separate a whole song in crossfaded chunks: ``({target: (C, S)}, {target: activity})``.

    The separator's activity curves are per center=True STFT frame (``1 + S // hop``); they are
    re-indexed to the labels' center=False frames (frame t of center=False is centred where
    center=True frame t + n_fft/(2 hop) is), so predictions and labels describe the same audio.
    """
    from tfmusic.audio.chunking import separate_in_chunks
    from tfmusic.audio.stft import num_frames

    n_fft, hop = 4096, 1024
    outputs = separate_in_chunks(mixture, separate_chunk, chunk_samples=int(CHUNK_SECONDS * SAMPLE_RATE),
                                 overlap_samples=int(OVERLAP_SECONDS * SAMPLE_RATE), frame_hop=hop,
                                 min_samples=n_fft, progress=False)
    estimates = {t: np.asarray(outputs[t]) for t in targets if t in outputs}
    shift = n_fft // (2 * hop)
    frames = num_frames(mixture.shape[-1], n_fft, hop, center=False)
    activity = {t: np.ravel(outputs[f"{t}_activity"])[shift:shift + frames] for t in targets
                if f"{t}_activity" in outputs}
    return estimates, activity


def _write_result(result: Mapping[str, Any], out_dir: str, split: str) -> dict[str, Any]:
    """I/O edge: write a track's documents; returns its manifest entry."""
    files = [str(write_track_json(doc, Path(out_dir), split)) for doc in result["docs"]]
    entry = {"track": result["track"], "status": result["status"], "files": files}
    if result.get("error"):
        entry["error"] = result["error"]
    return entry


def _manifest(entries: Sequence[Mapping[str, Any]], n_in: int, config: EvaluationConfig,
              split: str, runner: str) -> dict[str, Any]:
    failed = [e for e in entries if e["status"] != "ok"]
    return {
        "counts": {"in": n_in, "out": len(entries) - len(failed), "failed": len(failed)},
        "failed": [{"track": e["track"], "reason": e.get("error", "")} for e in failed],
        "tracks": sorted(e["track"] for e in entries if e["status"] == "ok"),
        "split": split,
        "runner": runner,
        "methods": [m.name for m in config.methods] + [ORACLE_LABELS[o] for o in config.oracles],
        "models": {m.name: list(m.paths) for m in config.methods},
        "mode": config.mode, "win": config.win, "hop": config.hop or config.win,
        "max_seconds": config.max_seconds,
    }


def evaluate_dataset(tracks: Sequence[Any], config: EvaluationConfig, out_dir: Path, split: str = "test",
                     *, beam: bool = False, beam_args: Sequence[str] = (),
                     progress: bool | None = None) -> dict[str, Any]:
    """Evaluate every method on every track; writes per-track JSON, manifest.json and summary.*.

    ``beam=True`` runs one Beam element per track (FnApiRunner unless ``--runner`` is among
    ``beam_args``); otherwise a plain loop with a progress bar. Both paths share TrackEvaluator and
    the writer, and the manifest's counts add up: in = out + failed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tracks = list(tracks)
    if not tracks:
        raise ValueError(f"no tracks to evaluate in split {split!r}")
    evaluator = TrackEvaluator(config)
    if not evaluator.targets():  # also loads every model once here: bad paths fail fast
        raise ValueError("no targets to evaluate (the models name none and --targets is empty)")
    if beam:
        entries = _run_beam(tracks, evaluator, str(out_dir), split, beam_args)
        runner = next((a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")), "FnApiRunner")
    else:
        from tqdm import tqdm

        disable = (not sys.stderr.isatty()) if progress is None else not progress
        entries = [_write_result(evaluator(t), str(out_dir), split)
                   for t in tqdm(tracks, desc="evaluate", unit="track", disable=disable)]
        runner = "in-process"
    manifest = _manifest(entries, len(tracks), config, split, runner)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if manifest["counts"]["out"]:
        manifest["summary"] = write_summary(out_dir)["bss"]
    return manifest


def _run_beam(tracks: Sequence[Any], evaluator: TrackEvaluator, out_dir: str, split: str,
              beam_args: Sequence[str]) -> list[dict[str, Any]]:
    import tempfile

    import apache_beam as beam

    from tfmusic.beam_options import make_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        entries_path = Path(tmp) / "entries.json"
        with make_pipeline(beam_args) as p:
            _ = (p
                 | "Tracks" >> beam.Create(list(tracks), reshuffle=True)
                 | "Evaluate" >> beam.Map(evaluator)
                 | "Write" >> beam.Map(_write_result, out_dir, split)
                 | "Collect" >> beam.combiners.ToList()
                 | "Entries" >> beam.Map(lambda es, path: Path(path).write_text(json.dumps(es)),
                                         str(entries_path)))
        return json.loads(entries_path.read_text())
