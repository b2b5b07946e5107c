"""Separation evaluation in one namespace (stable import surface for scripts and benchmarks).

The code lives in small modules, one job each; this module only re-exports their public names so
``from tfmusic.evaluation import separation as sep`` keeps working:

* :mod:`~tfmusic.evaluation.metrics`: BSS Eval v4/v3 windows, SI-SDR, activity P/R/F1/AUC (numpy);
* :mod:`~tfmusic.evaluation.scoring`: one method's estimates on one song -> a per-track document;
* :mod:`~tfmusic.evaluation.oracles`: IBM / IRM / the mixture (input-SDR);
* :mod:`~tfmusic.evaluation.results`: museval-compatible JSON I/O, aggregation, manifest, tables;
* :mod:`~tfmusic.evaluation.report`: report.md and figures;
* :mod:`~tfmusic.evaluation.inputs`: songs and models read through storage;
* :mod:`~tfmusic.evaluation.pipeline`: the track evaluator and the in-process driver;
* :mod:`~tfmusic.evaluation.beam_job`: the ``EvaluateSeparation`` Beam transform.

New code imports from those modules directly.
"""

from __future__ import annotations

from tfmusic.evaluation.metrics import (
    ACTIVITY_THRESHOLD, BSS_METRICS, FILTERS_LEN, MAX_DB, METRICS, MODES, SAMPLE_RATE, SILENT_PEAK,
    activity_curve, activity_scores, bss_eval_target, fit_length, frame_slices, is_silent,
    museval_metrics, museval_version, roc_auc, si_sdr,
)
from tfmusic.evaluation.oracles import evaluate_oracles, oracle_estimate, stft_pair
from tfmusic.evaluation.pipeline import (
    CHUNK_SECONDS, OVERLAP_SECONDS, EvaluationConfig, MethodSpec, TrackEvaluator, evaluate_dataset,
    parse_method, separate_track,
)
from tfmusic.evaluation.results import (
    ORACLE_LABELS, ORACLES, activity_table, aggregate, load_results, markdown_table, method_order,
    safe_name, track_json, track_medians, write_summary, write_track_json,
)
from tfmusic.evaluation.scoring import TrackAudio, evaluate_estimates

__all__ = [
    "ACTIVITY_THRESHOLD",
    "BSS_METRICS",
    "CHUNK_SECONDS",
    "EvaluationConfig",
    "FILTERS_LEN",
    "MAX_DB",
    "METRICS",
    "MODES",
    "MethodSpec",
    "ORACLES",
    "ORACLE_LABELS",
    "OVERLAP_SECONDS",
    "SAMPLE_RATE",
    "SILENT_PEAK",
    "TrackAudio",
    "TrackEvaluator",
    "activity_curve",
    "activity_scores",
    "activity_table",
    "aggregate",
    "bss_eval_target",
    "evaluate_dataset",
    "evaluate_estimates",
    "evaluate_oracles",
    "fit_length",
    "frame_slices",
    "is_silent",
    "load_results",
    "markdown_table",
    "method_order",
    "museval_metrics",
    "museval_version",
    "oracle_estimate",
    "parse_method",
    "roc_auc",
    "safe_name",
    "separate_track",
    "si_sdr",
    "stft_pair",
    "track_json",
    "track_medians",
    "write_summary",
    "write_track_json",
]
