"""Separation report: report.md and the paper-style figures from `tfmusic evaluate` results.

Why: the IASS paper compares IASS, Open-Unmix, oracle masks and the mixture per instrument with
box plots of SDR over songs plus a SDR/SIR/SAR table, and shows predicted instrument activity
against the labels for a song. This module draws those from the per-track JSON files alone, so a
report can be rebuilt (or merged from several evaluation folders) without re-running museval.
Tables and aggregation are :mod:`tfmusic.evaluation.results`' (the same as ``summary.md``); this
module adds the claim table, per-song SDR and figures. Folders may be on object storage.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

from tfmusic import storage
from tfmusic.evaluation import results as res
from tfmusic.evaluation.metrics import ACTIVITY_THRESHOLD, SAMPLE_RATE

FIGURE_DPI = 110
BAR_CLIP_DB = 60.0  # bars beyond +-60 dB are drawn clipped, with their value written on top
HOP_SECONDS = 1024 / SAMPLE_RATE  # the activity labels' framing (tfmusic.data.stems.activity)
FRAME_CENTER_SECONDS = 2048 / SAMPLE_RATE  # center=False frame t covers [t*hop, t*hop + 4096)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    """Save a figure as PNG to ``path`` (local or object storage) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=FIGURE_DPI, format="png")
    _plt().close(fig)
    storage.write_bytes(path, buf.getvalue())
    return path


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def model_methods(summary: Mapping[str, Any]) -> list[str]:
    oracle = set(res.ORACLE_LABELS.values())
    return [m for m in res.method_order(summary["bss"]) if m not in oracle]


def pick_baseline(methods: Sequence[str], baseline: str | None = None) -> str | None:
    """The method others are compared with: ``baseline`` if given, else an Open-Unmix-like name."""
    if baseline:
        if baseline not in methods:
            raise ValueError(f"baseline {baseline!r} is not among the evaluated methods {list(methods)}")
        return baseline
    for m in methods:
        if "umx" in m.lower() or "unmix" in m.lower():
            return m
    return None


def claim_rows(summary: Mapping[str, Any], method: str, baseline: str,
               floor: str = "input-SDR", ceiling: str = "IBM") -> list[dict[str, Any]]:
    """Per target: median SDR of method/baseline/floor/ceiling and whether
    method >= baseline, both > floor and both < ceiling (None where a number is missing)."""
    bss = summary["bss"]
    rows = []
    targets = sorted(set(bss.get(method, {})) & set(bss.get(baseline, {})))
    for target in targets:
        def sdr(name: str) -> float:
            return bss.get(name, {}).get(target, {}).get("SDR", float("nan"))

        a, b, lo, hi = sdr(method), sdr(baseline), sdr(floor), sdr(ceiling)

        def check(ok: bool, *values: float) -> bool | None:
            return None if not all(np.isfinite(v) for v in values) else bool(ok)

        rows.append({
            "target": target, method: a, baseline: b, floor: lo, ceiling: hi,
            "method_ge_baseline": check(a >= b, a, b),
            "above_floor": check(a > lo and b > lo, a, b, lo),
            "below_ceiling": check(a < hi and b < hi, a, b, hi),
        })
    return rows


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "**no**")


def claim_markdown(summary: Mapping[str, Any], method: str, baseline: str) -> str:
    rows = claim_rows(summary, method, baseline)
    lines = [f"| target | {method} SDR | {baseline} SDR | input-SDR | IBM | {method} >= {baseline} "
             f"| both > input-SDR | both < IBM |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {_fmt(r[method])} | {_fmt(r[baseline])} | {_fmt(r['input-SDR'])} "
                     f"| {_fmt(r['IBM'])} | {_yes(r['method_ge_baseline'])} | {_yes(r['above_floor'])} "
                     f"| {_yes(r['below_ceiling'])} |")
    return "\n".join(lines) + "\n"


def sdr_boxplot(summary: Mapping[str, Any], path: str | os.PathLike, metric: str = "SDR") -> str:
    """Per-instrument box plots of per-song median ``metric``, one box per method."""
    plt = _plt()
    per_track = summary["per_track"]
    methods = res.method_order(per_track)
    targets = sorted({t for m in per_track.values() for t in m})
    if not targets:
        raise ValueError("no BSS Eval scores to plot (every target was skipped?)")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(targets) * len(methods) ** 0.5 + 3), 4.2))
    width = 0.8 / max(len(methods), 1)
    colors = plt.get_cmap("tab10")
    for i, method in enumerate(methods):
        data, positions = [], []
        for j, target in enumerate(targets):
            values = [v[metric] for v in per_track[method].get(target, {}).values() if np.isfinite(v[metric])]
            if values:
                data.append(values)
                positions.append(j - 0.4 + width * (i + 0.5))
        if not data:
            continue
        bp = ax.boxplot(data, positions=positions, widths=width * 0.85, patch_artist=True,
                        showfliers=True, manage_ticks=False)
        for box in bp["boxes"]:
            box.set(facecolor=colors(i % 10), alpha=0.75)
        for med in bp["medians"]:
            med.set(color="black")
        for pos, values in zip(positions, data):  # every song as a dot: few songs make thin boxes
            ax.scatter(np.full(len(values), pos), values, s=9, color="black", alpha=0.6, zorder=3)
        ax.plot([], [], "s", color=colors(i % 10), label=method)
    ax.set_xticks(range(len(targets)), targets)
    ax.set_ylabel(f"{metric} (dB), median over 1 s frames")
    ax.set_title(f"{metric} per instrument over held-out songs")
    ax.axhline(0, color="grey", lw=0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, os.fspath(path))


def metrics_bars(summary: Mapping[str, Any], path: str | os.PathLike,
                 metrics: Sequence[str] = ("SDR", "SIR", "SAR")) -> str:
    """Grouped bars of the aggregate (median of medians) metrics per target and method."""
    plt = _plt()
    bss = summary["bss"]
    methods = res.method_order(bss)
    targets = sorted({t for m in bss.values() for t in m})
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    colors = plt.get_cmap("tab10")
    width = 0.8 / max(len(methods), 1)
    for ax, metric in zip(axes[0], metrics):
        for i, method in enumerate(methods):
            vals = np.array([bss[method].get(t, {}).get(metric, np.nan) for t in targets], dtype=float)
            x = np.arange(len(targets)) - 0.4 + width * (i + 0.5)
            shown = np.clip(np.nan_to_num(vals, nan=0.0), -BAR_CLIP_DB, BAR_CLIP_DB)
            ax.bar(x, shown, width * 0.9, color=colors(i % 10), label=method)
            for xi, v in zip(x, vals):  # e.g. the mixture's ~200 dB SAR would flatten every other bar
                if np.isfinite(v) and abs(v) > BAR_CLIP_DB:
                    ax.text(xi, np.sign(v) * BAR_CLIP_DB, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(targets)), targets)
        ax.set_title(f"{metric} (dB)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, os.fspath(path))


def activity_figure(doc: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Predicted activity probability vs. label confidence over time, one panel per target."""
    plt = _plt()
    activity = doc.get("activity") or {}
    if not activity:
        raise ValueError(f"{doc.get('method')}/{doc.get('track')}: no activity curves in this result")
    targets = sorted(activity)
    fig, axes = plt.subplots(len(targets), 1, figsize=(9, 1.9 * len(targets) + 0.6), squeeze=False, sharex=True)
    for ax, target in zip(axes[:, 0], targets):
        prob = np.asarray(activity[target]["probability"])
        label = np.asarray(activity[target]["label"])
        t = FRAME_CENTER_SECONDS + HOP_SECONDS * np.arange(prob.size)
        ax.fill_between(t, 0, (label >= 0.5).astype(float), step="mid", color="tab:green", alpha=0.25,
                        label="label (confidence >= 0.5)")
        ax.plot(t, label, color="tab:green", lw=0.8, label="label confidence")
        ax.plot(t, prob, color="tab:blue", lw=1.2, label="predicted p(active)")
        ax.set_xlim(0, t[-1] + FRAME_CENTER_SECONDS if t.size else 1)
        ax.axhline(ACTIVITY_THRESHOLD, color="grey", ls="--", lw=0.6)
        s = activity[target]
        ax.set_title(f"{target}: F1 {_fmt(s['f1'])}, ROC-AUC {_fmt(s['auc'])}", fontsize=9)
        ax.set_ylim(-0.05, 1.05)
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{doc.get('method')}: instrument activity, {doc.get('track')}", fontsize=10)
    fig.tight_layout()
    return _save(fig, os.fspath(path))


def per_track_markdown(summary: Mapping[str, Any]) -> str:
    per_track = summary["per_track"]
    methods = res.method_order(per_track)
    lines = ["| target | song | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    targets = sorted({t for m in per_track.values() for t in m})
    for target in targets:
        songs = sorted({s for m in per_track.values() for s in m.get(target, {})})
        for song in songs:
            cells = [_fmt(per_track[m].get(target, {}).get(song, {}).get("SDR", np.nan)) for m in methods]
            lines.append(f"| {target} | {song} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike, track: str | None = None,
                 baseline: str | None = None) -> list[str]:
    """Build report.md, summary.json and figures from a results folder; returns the written paths."""
    results_dir, out_dir = os.fspath(results_dir), os.fspath(out_dir)
    docs = res.load_results(results_dir)
    if not docs:
        raise ValueError(f"{results_dir}: no per-track results (<method>/<split>/<track>.json) found")
    summary = res.aggregate(docs)
    storage.makedirs(out_dir)
    manifest_path = storage.join(results_dir, res.MANIFEST)
    manifest = json.loads(storage.read_text(manifest_path)) if storage.exists(manifest_path) else {}

    lines = ["# Separation evaluation report", ""]
    if manifest:
        c = manifest.get("counts", {})
        lines += [f"Songs: {c.get('out', '?')} scored of {c.get('in', '?')} ({c.get('failed', 0)} failed), "
                  f"split `{manifest.get('split')}`, BSS Eval {manifest.get('mode')}, window "
                  f"{manifest.get('win')} s, hop {manifest.get('hop')} s"
                  + (f", first {manifest['max_seconds']} s of each song" if manifest.get("max_seconds") else "")
                  + ".", ""]
        if manifest.get("models"):
            lines += ["Models: " + "; ".join(f"{k} = {', '.join(v)}" for k, v in manifest["models"].items()), ""]
    lines += ["Scores are medians over 1 s frames per song, then medians over songs (museval convention); "
              "each target is scored against (target, rest = mixture - target). IBM/IRM are oracle "
              "masks (upper bounds) and input-SDR scores the mixture itself (the floor).", "",
              "## BSS Eval", "", res.markdown_table(summary)]
    models = model_methods(summary)
    base = pick_baseline(models, baseline)
    if base:
        for method in models:
            if method != base:
                lines += [f"## {method} vs {base} (SDR, the paper's claim)", "",
                          claim_markdown(summary, method, base)]
    if summary["skipped"]:
        lines += ["## Skipped targets (silent reference or no stem)", "",
                  "| method | target | songs |", "|---|---|---|"]
        for m, counts in sorted(summary["skipped"].items()):
            lines += [f"| {m} | {t} | {n} |" for t, n in sorted(counts.items())]
        lines.append("")
    figures: list[str] = []
    if summary["per_track"]:
        figures.append(sdr_boxplot(summary, storage.join(out_dir, "sdr_boxplot.png")))
        figures.append(metrics_bars(summary, storage.join(out_dir, "metrics_bars.png")))
    if summary["activity"]:
        lines += ["## Activity detection (frames pooled over songs)", "", res.activity_table(summary)]
        with_act = [d for d in docs if d.get("activity") and (track is None or d["track"] == track)]
        if track and not with_act:
            raise ValueError(f"song {track!r} has no activity curves in {results_dir}")
        if with_act:
            doc = sorted(with_act, key=lambda d: (d["track"], d["method"]))[0]
            name = f"activity_{res.safe_name(doc['track'])}.png"
            figures.append(activity_figure(doc, storage.join(out_dir, name)))
    lines += ["## Per-song SDR", "", per_track_markdown(summary), "## Figures", ""]
    lines += [f"![{os.path.splitext(storage.basename(p))[0]}]({storage.basename(p)})" for p in figures]
    report_path = storage.join(out_dir, "report.md")
    storage.write_atomic(report_path, "\n".join(lines) + "\n")
    summary_path = storage.join(out_dir, res.SUMMARY_JSON)
    storage.write_atomic(summary_path, res.summary_files(summary)[res.SUMMARY_JSON])
    return [report_path, summary_path, *figures]
