"""One song -> its result documents, and a run's manifest: what both evaluation drivers share.

The in-process loop (:func:`tfmusic.evaluation.pipeline.evaluate_dataset`) and the Beam transform
(:class:`tfmusic.evaluation.beam_job.EvaluateSeparation`) both drive this module: a
:class:`TrackEvaluator` (picklable, models loaded once per process) turns a song into one museval
document per method, :func:`evaluate_record` stages those documents as files, and
:func:`write_metadata` writes ``summary.*`` and ``manifest.json`` from the records. Kept apart from
the drivers so the Beam job imports it without importing the driver that starts the Beam job.

A song that fails (unreadable audio, a model error) is a failed record; the evaluator keeps no
state from it, so the songs after it are evaluated normally.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from tfmusic import beam_io, storage
from tfmusic.evaluation import results as res
from tfmusic.evaluation.inputs import load_separator, track_audio
from tfmusic.evaluation.metrics import MODES, SAMPLE_RATE
from tfmusic.evaluation.oracles import evaluate_oracles
from tfmusic.evaluation.results import ORACLE_LABELS, ORACLES
from tfmusic.evaluation.scoring import evaluate_estimates
from tfmusic.evaluation.signals import DiskSink, spill_folder

CHUNK_SECONDS = 30.0  # separation chunks during evaluation (bounded memory on long songs)
OVERLAP_SECONDS = 1.0

__all__ = [
    "CHUNK_SECONDS", "OVERLAP_SECONDS", "EvaluationConfig", "MethodSpec", "RunInfo", "TrackEvaluator",
    "evaluate_record", "failure_reason", "parse_method", "read_manifest", "separate_track", "write_metadata",
]


# --------------------------------------------------------------------------------------------
# Methods and configuration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MethodSpec:
    """A separation method to evaluate: a display name and its model files/run dirs."""

    name: str
    paths: tuple[str, ...]


def _exists(path: str) -> bool:
    return storage.exists(path) or storage.is_dir(path)


def parse_method(text: str) -> MethodSpec:
    """``[NAME=]PATH[,PATH...]`` -> MethodSpec; without NAME the first path's folder name is used.

    Paths are local or on object storage (``gs://bucket/runs/iass_drums``).
    """
    name, sep_, paths = text.partition("=")
    if not sep_ or storage.scheme(name):
        name, paths = "", text
    items = tuple(p.strip() for p in paths.split(",") if p.strip())
    if not items:
        raise ValueError(f"--model {text!r}: no model path given (expected [NAME=]PATH[,PATH...])")
    for p in items:
        storage.check_path(p, what="model")
        if not _exists(p):
            raise FileNotFoundError(p)
    if not name:
        first = items[0]
        base = os.path.basename(os.path.abspath(first)) if storage.is_local(first) else storage.basename(first)
        name = base[: -len(".keras")] if base.endswith(".keras") else base
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
    chunk_seconds: float = CHUNK_SECONDS
    overlap_seconds: float = OVERLAP_SECONDS

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown BSS Eval mode {self.mode!r}; expected one of {MODES}")
        bad = [o for o in self.oracles if o not in ORACLES]
        if bad:
            raise ValueError(f"unknown oracle(s) {bad}; expected some of {list(ORACLES)}")
        names = self.method_names()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"method names must be unique, got {dupes} more than once (use NAME=PATH)")
        if not self.methods and not self.targets:
            raise ValueError("nothing to evaluate: give at least one model or the targets for the oracles")

    def method_names(self) -> list[str]:
        return [m.name for m in self.methods] + [ORACLE_LABELS[o] for o in self.oracles]


# --------------------------------------------------------------------------------------------
# Models and separation
# --------------------------------------------------------------------------------------------

def separate_track(separate_chunk: Callable[[np.ndarray], Mapping[str, np.ndarray]], targets: Sequence[str],
                   mixture: np.ndarray, *, chunk_seconds: float = CHUNK_SECONDS,
                   overlap_seconds: float = OVERLAP_SECONDS, scratch: str | None = None,
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Separate a whole song with :func:`~tfmusic.audio.chunking.separate_waveform`:
    ``({target: (C, S)}, {target: activity})``, with the separator's own STFT settings. With
    ``scratch`` (a local folder) the estimates are streamed there as
    :class:`~tfmusic.evaluation.signals.DiskSignal` s instead of held in memory.

    The separator's activity curves are per center=True STFT frame (``1 + S // hop``); they are
    re-indexed to the labels' center=False frames (frame t of center=False is centred where
    center=True frame t + n_fft/(2 hop) is), so predictions and labels describe the same audio.
    """
    from tfmusic.audio.chunking import separate_waveform, settings_of
    from tfmusic.audio.frames import num_frames

    settings = settings_of(separate_chunk)
    sink = DiskSink(scratch, mixture.shape[1]) if scratch else None
    outputs = separate_waveform(mixture, separate_chunk, settings=settings, chunk_seconds=chunk_seconds,
                                overlap_seconds=overlap_seconds, progress=False, sink=sink)
    if sink is not None:
        outputs.update(sink.signals())
    estimates = {t: outputs[t] for t in targets if t in outputs}
    shift = settings.n_fft // (2 * settings.hop)
    frames = num_frames(mixture.shape[-1], settings.n_fft, settings.hop, center=False)
    activity = {t: np.ravel(outputs[f"{t}_activity"])[shift:shift + frames] for t in targets
                if f"{t}_activity" in outputs}
    return estimates, activity


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_reason(err: BaseException) -> str:
    """``"<ExceptionType>: <message>"`` without terminal colour codes (Keras bolds its messages)."""
    return f"{type(err).__name__}: {_ANSI.sub('', str(err)).strip()}"


class TrackEvaluator:
    """Picklable callable: one dataset track -> ``{"track", "status", "docs", "error"?}``.

    Models are loaded lazily, once per process, so the same object serves the in-process loop and
    a Beam DoFn (one song per element: museval holds several copies of a song). Errors are caught
    per song and returned as ``status="failed"`` with the reason; a model whose call failed
    forgets its traced graphs, so the failure cannot leak into the next song.
    """

    def __init__(self, config: EvaluationConfig) -> None:
        self.config = config
        self._models: dict[str, tuple[Callable, list[str]]] | None = None

    def __getstate__(self) -> dict:
        return {"config": self.config, "_models": None}

    def models(self) -> dict[str, tuple[Callable, list[str]]]:
        """method name -> (chunk function, targets), loaded once per process (all or nothing)."""
        if self._models is None:
            from tfmusic.audio.chunking import graph_chunk_fn

            models = {}
            for m in self.config.methods:
                try:
                    separator = load_separator(m.paths)
                except (ValueError, FileNotFoundError) as err:
                    raise ValueError(f"method {m.name!r}: {err}") from err
                models[m.name] = (graph_chunk_fn(separator, reduce_retracing=True), list(separator.target_names))
            self._models = models
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
            return {"track": name, "status": "failed", "error": failure_reason(err), "docs": []}

    def evaluate(self, track: Any) -> list[dict[str, Any]]:
        cfg = self.config
        targets = self.targets()
        kw = dict(mode=cfg.mode, win=cfg.win, hop=cfg.hop, sample_rate=cfg.sample_rate)
        docs = []
        # Every whole-song signal (mixture, references, estimates) lives in this folder while the
        # song is scored, read chunk by chunk: memory does not grow with the song, models or oracles.
        with tempfile.TemporaryDirectory(prefix="tfmusic-eval-") as scratch:
            audio = track_audio(track, targets, cfg.sample_rate, cfg.max_seconds, scratch=scratch)
            for method, (separate_chunk, names) in self.models().items():
                with spill_folder(scratch) as folder:
                    try:
                        estimates, activity = separate_track(separate_chunk, names, audio.mixture,
                                                             chunk_seconds=cfg.chunk_seconds,
                                                             overlap_seconds=cfg.overlap_seconds, scratch=folder)
                    except Exception:
                        reset = getattr(separate_chunk, "reset", None)
                        if reset is not None:
                            reset()
                        raise
                    docs.append(evaluate_estimates(audio, {t: estimates[t] for t in targets if t in estimates},
                                                   method=method, activity=activity, **kw))
            docs.extend(evaluate_oracles(audio, targets, cfg.oracles, **kw).values())
        return docs


# --------------------------------------------------------------------------------------------
# Records, staging and metadata (shared by the loop and the Beam transform)
# --------------------------------------------------------------------------------------------

def evaluate_record(evaluator: TrackEvaluator, track: Any, staging: str, split: str) -> dict[str, Any]:
    """Evaluate one song and stage its documents: ``{"track", "status", "error"?, "files", "docs"}``."""
    from tfmusic.data.stems.track import Track

    if isinstance(track, Mapping):
        track = Track(**dict(track))
    result = evaluator(track)
    files = []
    if result["status"] == "ok":
        try:
            files = [beam_io.stage_bytes(staging, res.result_name(doc, split), res.doc_bytes(doc))
                     for doc in result["docs"]]
        except Exception as err:
            result = {"track": result["track"], "status": "failed", "docs": [], "error": failure_reason(err)}
    return {**result, "files": files}


@dataclass(frozen=True)
class RunInfo:
    """What the manifest says about a run besides its records."""

    split: str
    runner: str
    methods: tuple[str, ...]
    models: Mapping[str, tuple[str, ...]]
    mode: str
    win: float | None
    hop: float | None
    max_seconds: float | None

    @classmethod
    def of(cls, config: EvaluationConfig, split: str, runner: str) -> "RunInfo":
        return cls(split=split, runner=runner, methods=tuple(config.method_names()),
                   models={m.name: tuple(m.paths) for m in config.methods}, mode=config.mode,
                   win=config.win, hop=config.hop, max_seconds=config.max_seconds)


def write_metadata(finalized: Sequence[Mapping[str, Any]], records: Iterable[Mapping[str, Any]],
                   n_in: int, out_dir: str, info: RunInfo) -> dict[str, Any]:
    """Write summary.* (when some song was evaluated) and manifest.json (last); returns the manifest.

    ``finalized``: the renamed result files; they must be exactly the staged files of the
    records, so a file lost on the way fails the run.
    """
    records = list(records)
    manifest = res.build_manifest(records, n_in, split=info.split, runner=info.runner,
                                  methods=info.methods, models=info.models, mode=info.mode,
                                  win=info.win, hop=info.hop, max_seconds=info.max_seconds)
    staged = sorted(f["file"] for r in records for f in r.get("files", []))
    written = sorted(e["file"] for e in finalized)
    if staged != written:
        raise beam_io.CountsError(f"evaluate: {len(staged)} result files staged but {len(written)} finalized")
    manifest["files"] = len(written)
    files: dict[str, bytes] = {}
    if manifest["counts"]["out"]:
        summary = res.aggregate(doc for r in records for doc in r.get("docs", []))
        files.update(res.summary_files(summary))
    files[res.MANIFEST] = beam_io.json_bytes(manifest)
    beam_io.write_metadata(out_dir, files, last=res.MANIFEST)
    return manifest


def read_manifest(out_dir: str) -> dict[str, Any]:
    """A finished run's manifest (read back from the output, never from worker scratch)."""
    return json.loads(storage.read_text(storage.join(out_dir, res.MANIFEST)))
