"""``EvaluateSeparation``: separation evaluation as a Beam transform, one song per element.

museval holds several copies of a song while scoring it, so one song is the unit of work. The
transform takes a PCollection of track dicts (``Track.to_dict()``) and returns a one-element
PCollection: the run's manifest, written after everything else. Results travel through the
pipeline, never through files the driver reads back:

    tracks --CountTracks--------------------------------------------+ (n_in)
      \\--Reshuffle--EvaluateTrack (stage <method>/<split>/<track>.json under OUT/.staging/RUN)
            |--StagedFiles--FinalizeFiles (one rename pass once every song is done)
            |--CollectRecords (statuses, reasons and documents)      |
            +------------------------ WriteMetadata(summary.*, manifest.json last)

The driver (:func:`run_beam`) checks the paths and clears old outputs before the run, and reads
the finished manifest from the output folder afterwards.
"""

from __future__ import annotations

from typing import Any, Sequence

import apache_beam as beam
from apache_beam.pvalue import AsSingleton

from tfmusic import beam_io
from tfmusic.evaluation.evaluator import RunInfo, TrackEvaluator, evaluate_record, read_manifest, write_metadata

__all__ = ["EvaluateSeparation", "run_beam"]


class _EvaluateTrackFn(beam.DoFn):
    """One song -> its record; the evaluator (models) is set up once per worker."""

    def __init__(self, evaluator: TrackEvaluator, staging: str, split: str) -> None:
        self.evaluator, self.staging, self.split = evaluator, staging, split

    def process(self, track: dict[str, Any]):
        yield evaluate_record(self.evaluator, track, self.staging, self.split)


def _files(record: dict[str, Any]) -> list[dict[str, Any]]:
    return list(record["files"])


class EvaluateSeparation(beam.PTransform):
    """track dicts -> ``[manifest]``; writes per-track JSON, summary.* and manifest.json to ``out_dir``.

    ``out_dir`` must have been prepared (:func:`tfmusic.evaluation.pipeline.prepare`) and
    ``staging`` is a fresh ``beam_io.staging_dir(out_dir, run_id)``. ``evaluator.config.targets``
    should be resolved (the driver does so) so every worker scores the same targets.
    """

    def __init__(self, evaluator: TrackEvaluator, out_dir: str, staging: str, split: str = "test",
                 runner: str = "beam") -> None:
        super().__init__()
        self.evaluator, self.out_dir, self.staging, self.split = evaluator, out_dir, staging, split
        self.info = RunInfo.of(evaluator.config, split, runner)

    def expand(self, tracks):
        n_in = tracks | "CountTracks" >> beam.combiners.Count.Globally()
        records = (tracks
                   | "Reshuffle" >> beam.Reshuffle()
                   | "EvaluateTrack" >> beam.ParDo(_EvaluateTrackFn(self.evaluator, self.staging, self.split)))
        finalized = (records
                     | "StagedFiles" >> beam.FlatMap(_files)
                     | "FinalizeFiles" >> beam_io.FinalizeFiles(self.out_dir, self.staging))
        collected = records | "CollectRecords" >> beam.combiners.ToList()
        return finalized | "WriteMetadata" >> beam.Map(
            write_metadata, AsSingleton(collected), AsSingleton(n_in), self.out_dir, self.info)


def runner_name(beam_args: Sequence[str]) -> str:
    return next((a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")), "FnApiRunner")


def run_beam(tracks: Sequence[dict[str, Any]], evaluator: TrackEvaluator, out_dir: str, staging: str,
             split: str, beam_args: Sequence[str] = ()) -> dict[str, Any] | None:
    """Run :class:`EvaluateSeparation` on ``tracks``; returns the manifest it wrote (None when the
    runner only wrote a job template, ``--template_location``)."""
    from tfmusic.beam_options import has_flag, make_pipeline

    with make_pipeline(beam_args) as p:
        _ = (p
             | "Tracks" >> beam.Create(list(tracks))
             | "EvaluateSeparation" >> EvaluateSeparation(evaluator, out_dir, staging, split,
                                                          runner=runner_name(beam_args)))
    return None if has_flag(beam_args, "--template_location") else read_manifest(out_dir)
