"""The evaluation pipeline: methods x held-out songs -> per-track results, manifest and summary.

One :class:`~tfmusic.evaluation.evaluator.TrackEvaluator` (picklable, models loaded once per process)
turns a song into one museval document per method; :func:`~tfmusic.evaluation.evaluator.evaluate_record`
stages those documents as files. Two drivers share them: the plain in-process loop here, and the Beam transform
:class:`tfmusic.evaluation.beam_job.EvaluateSeparation` (one song per element). Either way:

1. the driver checks every path and clears the old outputs (:func:`tfmusic.beam_io.prepare_output`);
2. each song's documents are staged under ``OUT/.staging/RUN/`` and renamed into place once every
   song is done (:func:`tfmusic.beam_io.finalize`), so a killed run leaves no partial results;
3. ``summary.*`` and ``manifest.json`` (written last) are computed from the per-song records, and
   their counts add up (in = evaluated + failed, each failure with its reason).

Songs, models and outputs go through :mod:`tfmusic.storage`, so they may live on ``gs://``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Any, Sequence

from tfmusic import beam_io, storage
from tfmusic.beam_options import has_flag
from tfmusic.evaluation import results as res
from tfmusic.evaluation.evaluator import (CHUNK_SECONDS, OVERLAP_SECONDS, EvaluationConfig, MethodSpec,  # noqa: F401
                                          RunInfo, TrackEvaluator, evaluate_record, parse_method,
                                          separate_track, write_metadata)

METADATA = (res.MANIFEST, res.SUMMARY_JSON, res.SUMMARY_MD)

__all__ = [
    "CHUNK_SECONDS", "OVERLAP_SECONDS", "EvaluationConfig", "MethodSpec", "TrackEvaluator",
    "evaluate_dataset", "evaluate_record", "parse_method", "separate_track",
]


def prepare(out_dir: str, config: EvaluationConfig, split: str) -> str:
    """Check ``out_dir`` and delete this run's old results (metadata first), as every job does."""
    patterns = [f"{res.safe_name(m)}/{res.safe_name(split)}/*.json" for m in config.method_names()]
    return beam_io.prepare_output(out_dir, metadata=list(METADATA), data_patterns=patterns)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def _track_dict(track: Any) -> dict[str, Any]:
    return track.to_dict() if hasattr(track, "to_dict") else dict(track)


def evaluate_dataset(tracks: Sequence[Any], config: EvaluationConfig, out_dir: str | os.PathLike,
                     split: str = "test", *, beam: bool = False, beam_args: Sequence[str] = (),
                     progress: bool | None = None) -> dict[str, Any] | None:
    """Evaluate every method on every track; writes per-track JSON, summary.* and manifest.json.

    ``beam=True`` runs :class:`~tfmusic.evaluation.beam_job.EvaluateSeparation` (FnApiRunner unless
    ``--runner`` is among ``beam_args``); otherwise a plain loop with a progress bar. Both write the
    same files; ``out_dir`` may be on object storage. Returns the manifest, or None when Beam only
    wrote a job template (``--template_location``: nothing runs and the output is left alone).
    """
    tracks = [_track_dict(t) for t in tracks]
    if not tracks:
        raise ValueError(f"no tracks to evaluate in split {split!r}")
    out_dir = os.fspath(out_dir)
    storage.check_path(out_dir, what="--out")
    evaluator = TrackEvaluator(config)
    targets = evaluator.targets()  # also loads every model once here: bad paths fail fast
    if not targets:
        raise ValueError("no targets to evaluate (the models name none and --targets is empty)")
    config = replace(config, targets=targets)  # workers agree on the targets without asking again
    evaluator.config = config  # (pickled to Beam workers without its models: they load their own)
    template_only = beam and has_flag(beam_args, "--template_location")
    if not template_only:
        out_dir = prepare(out_dir, config, split)
    staging = beam_io.staging_dir(out_dir, beam_io.new_run_id())
    if beam:
        from tfmusic.evaluation.beam_job import run_beam

        manifest = run_beam(tracks, evaluator, out_dir, staging, split, beam_args)
        return None if template_only else manifest
    from tqdm import tqdm

    disable = (not sys.stderr.isatty()) if progress is None else not progress
    records = [evaluate_record(evaluator, t, staging, split)
               for t in tqdm(tracks, desc="evaluate", unit="track", disable=disable)]
    finalized = beam_io.finalize([f for r in records for f in r["files"]], out_dir, staging)
    return write_metadata(finalized, records, len(tracks), out_dir, RunInfo.of(config, split, "in-process"))


def summary_text(out_dir: str) -> str:
    path = storage.join(out_dir, res.SUMMARY_MD)
    return storage.read_text(path) if storage.exists(path) else ""
