"""Evaluation results: museval-compatible per-track JSON, aggregation, the run manifest and tables.

Per-track results are museval ``TrackStore`` documents (``targets[].frames[].metrics`` with
SDR/SIR/SAR/ISR, ``time``, ``duration``, ``museval_version``) plus tfmusic keys (SI-SDR, skipped
targets, activity curves), stored as ``<out>/<method>/<split>/<track>.json`` so
``museval.EvalStore().add_eval_dir(<out>/<method>)`` loads them when the split is ``test``.
Files hold results only (no wall times, host names or run ids), so a re-run, a Beam run and a
run on object storage write the same bytes.

Aggregation follows ``museval.EvalStore``: median over a track's frames, then median over tracks,
NaN frames ignored. Paths go through :mod:`tfmusic.storage` (local, ``gs://``, ...).
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tfmusic import storage
from tfmusic.evaluation.bss_v4 import SILENT_ESTIMATE_DB
from tfmusic.evaluation.metrics import METRICS, activity_scores, museval_version

ORACLES = ("ibm", "irm", "mix")
ORACLE_LABELS = {"ibm": "IBM", "irm": "IRM", "mix": "input-SDR"}
MANIFEST = "manifest.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
RESULT_PATTERN = "*/*/*.json"  # <method>/<split>/<track>.json

__all__ = [
    "MANIFEST", "ORACLES", "ORACLE_LABELS", "RESULT_PATTERN", "SUMMARY_JSON", "SUMMARY_MD",
    "activity_table", "aggregate", "build_manifest", "doc_bytes", "load_results", "markdown_table",
    "method_order", "result_name", "safe_name", "summary_markdown", "track_json", "track_medians",
    "write_summary", "write_track_json",
]


# --------------------------------------------------------------------------------------------
# Per-track documents
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


def safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)
    return keep.strip(".") or "unnamed"


def result_name(doc: Mapping[str, Any], split: str) -> str:
    """``<method>/<split>/<track>.json``, relative to the results folder (museval's layout)."""
    return "/".join((safe_name(doc["method"]), safe_name(split), f"{safe_name(doc['track'])}.json"))


def doc_bytes(doc: Mapping[str, Any]) -> bytes:
    """The file contents of a per-track document (NaN as the JSON token NaN, as museval writes)."""
    return (json.dumps(doc, indent=1, allow_nan=True) + "\n").encode("utf-8")


def write_track_json(doc: Mapping[str, Any], out_dir: str | os.PathLike, split: str) -> str:
    """Write ``<out>/<method>/<split>/<track>.json`` (atomically); returns its path."""
    path = storage.join(os.fspath(out_dir), *result_name(doc, split).split("/"))
    storage.write_atomic(path, doc_bytes(doc))
    return path


def load_results(results_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every per-track JSON under ``results_dir`` (``<method>/<split>/<track>.json``), sorted by path."""
    results_dir = os.fspath(results_dir)
    if not storage.is_dir(results_dir):
        raise FileNotFoundError(results_dir)
    docs = []
    for path in storage.glob(storage.join(results_dir, RESULT_PATTERN)):
        try:
            doc = json.loads(storage.read_text(path))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(doc, dict) or "targets" not in doc or "method" not in doc:
            raise ValueError(f"{path}: not a tfmusic per-track result (missing 'targets'/'method')")
        doc.setdefault("split", storage.basename(storage.dirname(path)))
        docs.append(doc)
    return docs


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------

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

    Every frame where the target and the rest play counts, including those where a method's
    estimate was silent (scored at ``SILENT_ESTIMATE_DB``), so all methods are compared on the same
    frames; ``frames`` and ``silenced`` say how many per method and target.

    Returns ``{"bss": {method: {target: {metric: value, "tracks": n, "frames": n, "silenced": n}}},
    "per_track": {method: {target: {track: {metric: value}}}},
    "activity": {method: {target: {precision, recall, f1, auc (pooled over all frames), ...}}},
    "skipped": {method: {target: n_tracks}}}``. The result does not depend on the order of ``docs``.
    """
    docs = sorted(docs, key=lambda d: (str(d["method"]), str(d["track"])))
    per_track: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    pooled: dict[str, dict[str, tuple[list, list]]] = {}
    skipped: dict[str, dict[str, int]] = {}
    scored: dict[str, dict[str, dict[str, int]]] = {}  # method -> target -> track -> frames with an SDR
    silenced: dict[str, dict[str, dict[str, int]]] = {}  # ... of which scored at the silent-estimate floor
    for doc in docs:
        method = doc["method"]
        for target, med in track_medians(doc).items():
            per_track.setdefault(method, {}).setdefault(target, {})[doc["track"]] = med
        for t in doc["targets"]:
            sdr = np.array([f["metrics"].get("SDR", np.nan) for f in t["frames"]], dtype=np.float64)
            scored.setdefault(method, {}).setdefault(t["name"], {})[doc["track"]] = int(np.isfinite(sdr).sum())
            silenced.setdefault(method, {}).setdefault(t["name"], {})[doc["track"]] = int(
                np.sum(sdr == SILENT_ESTIMATE_DB))
        for item in doc.get("skipped", []):
            counts = skipped.setdefault(method, {})
            counts[item["name"]] = counts.get(item["name"], 0) + 1
        for target, act in (doc.get("activity") or {}).items():
            probs, labels = pooled.setdefault(method, {}).setdefault(target, ([], []))
            probs.extend(act["probability"])
            labels.extend(act["label"])
    bss: dict[str, dict[str, dict[str, float]]] = {}
    for method, targets in per_track.items():
        for target, tracks in targets.items():
            row = {m: _nanmedian([v[m] for v in tracks.values()]) for m in METRICS}
            row["tracks"] = sum(1 for v in tracks.values() if np.isfinite(v["SDR"]))
            row["frames"], row["silenced"] = (int(sum(counts[method][target][k] for k in tracks))
                                              for counts in (scored, silenced))
            bss.setdefault(method, {})[target] = row
    activity = {method: {target: activity_scores(p, y) for target, (p, y) in targets.items()}
                for method, targets in pooled.items()}
    return {"bss": bss, "per_track": per_track, "activity": activity, "skipped": skipped}


# --------------------------------------------------------------------------------------------
# Tables (summary.md and the report share them)
# --------------------------------------------------------------------------------------------

def method_order(methods: Iterable[str]) -> list[str]:
    """Models first (alphabetical), then IRM, IBM, input-SDR: the order of the paper's tables."""
    oracle = [ORACLE_LABELS[k] for k in ("irm", "ibm", "mix")]
    methods = list(dict.fromkeys(methods))
    return sorted(m for m in methods if m not in oracle) + [m for m in oracle if m in methods]


def markdown_table(summary: Mapping[str, Any], metrics: Sequence[str] = METRICS) -> str:
    """Aggregate BSS table: one row per (target, method), medians over frames then tracks."""
    lines = ["| target | method | " + " | ".join(metrics) + " | tracks | frames | silenced |",
             "|---|---|" + "---|" * (len(metrics) + 3)]
    bss = summary["bss"]
    targets = sorted({t for rows in bss.values() for t in rows})
    for target in targets:
        for method in method_order(bss):
            row = bss[method].get(target)
            if row is None:
                continue
            cells = ["" if not np.isfinite(row[m]) else f"{row[m]:.2f}" for m in metrics]
            lines.append(f"| {target} | {method} | " + " | ".join(cells)
                         + f" | {row['tracks']} | {row.get('frames', '')} | {row.get('silenced', '')} |")
    return "\n".join(lines) + "\n"


def _share(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.1%}"


def activity_table(summary: Mapping[str, Any]) -> str:
    """Pooled frame-level activity detection table (methods that predict activity); ``bleed gated``
    is the share of frames with a silent target where the gate closes (and removes bleed)."""
    lines = ["| target | method | precision | recall | F1 | ROC-AUC | frames | active | bleed gated |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, targets in sorted(summary["activity"].items()):
        for target, s in sorted(targets.items()):
            auc = "" if not np.isfinite(s["auc"]) else f"{s['auc']:.3f}"
            lines.append(f"| {target} | {method} | {s['precision']:.3f} | {s['recall']:.3f} | "
                         f"{s['f1']:.3f} | {auc} | {s['frames']} | {s['active_frames']} | "
                         f"{_share(s.get('bleed_gated'))} |")
    return "\n".join(lines) + "\n"


def summary_markdown(summary: Mapping[str, Any]) -> str:
    text = ["# Separation results", "",
            "BSS Eval medians over 1 s frames, then over tracks. Every method is scored on the same frames "
            "(those where the target and the rest play): a frame where a method's estimate is silent is "
            f"scored at {SILENT_ESTIMATE_DB:.0f} dB (SDR/ISR/SI-SDR), not dropped; `frames` counts the "
            "scored frames and `silenced` those at that floor.", "",
            markdown_table(summary)]
    if summary["activity"]:
        text += ["## Activity detection (frames pooled over tracks)", "", activity_table(summary)]
    return "\n".join(text)


def summary_files(summary: Mapping[str, Any]) -> dict[str, bytes]:
    """``{summary.json: ..., summary.md: ...}`` contents for ``summary``."""
    return {SUMMARY_JSON: (json.dumps(summary, indent=1, allow_nan=True, sort_keys=True) + "\n").encode(),
            SUMMARY_MD: summary_markdown(summary).encode("utf-8")}


def write_summary(results_dir: str | os.PathLike) -> dict[str, Any]:
    """Aggregate every per-track JSON under ``results_dir`` into summary.json and summary.md."""
    results_dir = os.fspath(results_dir)
    summary = aggregate(load_results(results_dir))
    for name, data in summary_files(summary).items():
        storage.write_atomic(storage.join(results_dir, name), data)
    return summary


# --------------------------------------------------------------------------------------------
# Run manifest
# --------------------------------------------------------------------------------------------

def build_manifest(records: Iterable[Mapping[str, Any]], n_in: int, *, split: str, runner: str,
                   methods: Sequence[str], models: Mapping[str, Sequence[str]], mode: str,
                   win: float | None, hop: float | None, max_seconds: float | None) -> dict[str, Any]:
    """The run's manifest from one record per input track (``{"track", "status", "error"?}``).

    ``counts`` add up (``in = out + failed``, checked with :func:`tfmusic.beam_io.check_counts`):
    a track lost between input and output fails the run instead of shrinking the results.
    """
    from tfmusic.beam_io import check_counts

    records = sorted(records, key=lambda r: str(r["track"]))
    failed = [r for r in records if r["status"] != "ok"]
    ok = [r for r in records if r["status"] == "ok"]
    reasons: dict[str, int] = {}
    for r in failed:
        kind = str(r.get("error", "")).split(":", 1)[0] or "unknown"
        reasons[kind] = reasons.get(kind, 0) + 1
    check_counts({"in": n_in, "out": len(ok), "rejected": reasons}, "evaluate")
    return {
        "counts": {"in": n_in, "out": len(ok), "failed": len(failed)},
        "failed": [{"track": r["track"], "reason": r.get("error", "")} for r in failed],
        "failure_kinds": reasons,
        "tracks": [r["track"] for r in ok],
        "split": split,
        "runner": runner,
        "methods": list(methods),
        "models": {k: list(v) for k, v in models.items()},
        "mode": mode, "win": win, "hop": hop or win,
        "max_seconds": max_seconds,
    }
