"""`tfmusic separate`: split songs into stems with trained IASS / Open-Unmix models.

Songs of any length, sample rate and channel count (mono or stereo) are resampled to 44.1 kHz and
processed in crossfaded chunks (:mod:`tfmusic.audio.chunking`), so memory stays bounded. Stems are
written as ``OUT/<song>/<target>.wav`` as each region is finished; IASS targets also give a
per-frame activity curve (``OUT/<song>/activity.csv``, and ``activity.png`` with ``--plot``).

Backends: the "separate one chunk" step is pluggable. ``CHUNK_BACKENDS`` maps a ``--backend`` name
to a factory ``(args) -> (chunk_fn, target_names)`` where ``chunk_fn((C, L) float32) -> {target:
(C, L) waveform, f"{target}_activity": (1 + L // 1024,) curve}``. "keras" runs the models in
process; other areas (ONNX, a TF Serving server) register their own factory and flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DESCRIPTION = """\
Separate songs into stems with IASS and/or Open-Unmix models (one model per target).

--model takes a training run directory (model.keras + config.json naming the target) or a .keras
file (an IASS/OpenUnmix model that knows its target, or a saved Separator); repeat it per target.
Without --model the models that ship with tfmusic are used (`tfmusic models list`; with --targets,
the shipped model of each named target).
Input of any sample rate is resampled to the models' rate (44.1 kHz) and the stems back to the
song's rate and length (--stem-rate model keeps 44.1 kHz), as OUT/<song>/<target>.wav, with the
song's channel count. Songs whose file names collide
(MUSDB's */mixture.wav) are named by their folder; existing stems are never replaced silently
(--overwrite). IASS models also report per-frame activity
(OUT/<song>/activity.csv; --plot draws it to activity.png).

examples:
  tfmusic separate song.wav --out separated                                      # the shipped models
  tfmusic separate song.wav --model runs/iass_vocals --model runs/iass_drums --out separated
  tfmusic separate a.flac b.wav --model umx_vocals.keras --targets vocals --wiener-iterations 1 --out sep
  tfmusic separate musdb/test/*/mixture.wav --model runs/umx_drums --out sep     # OUT/<track>/drums.wav
  tfmusic separate long_set.wav --model runs/iass_piano --chunk-seconds 20 --activity-threshold 0.4 --plot
"""

ChunkFn = Callable[[np.ndarray], dict]
BackendFactory = Callable[[argparse.Namespace], tuple[ChunkFn, list[str]]]


def _keras_backend(args: argparse.Namespace) -> tuple[ChunkFn, list[str]]:
    """Load the models into one Keras Separator; the chunk function runs it as a traced graph."""
    from tfmusic.audio.chunking import graph_chunk_fn
    from tfmusic.cli.main import CliError
    from tfmusic.models.separator import load_separator

    if not args.model:
        args.model, shipped_residual = _shipped_models(args.targets)
        args.residual = args.residual or shipped_residual
    try:
        separator = load_separator(
            args.model,
            targets=args.targets,
            wiener_iterations=args.wiener_iterations,
            activity_threshold=args.activity_threshold,
            median_frames=args.median_frames,
            stft_method="fft",  # in process: FFT is ~20x faster than the exportable DFT basis
            residual=args.residual,
        )
    except ValueError as err:
        raise CliError(str(err)) from err

    return graph_chunk_fn(separator), list(separator.target_names) + ([args.residual] if args.residual else [])


def _shipped_models(targets: list[str] | None) -> tuple[list[str], str | None]:
    """The shipped default model per target (``tfmusic models list``), sha256-checked, and the
    shipped residual target ("other": the mixture minus the others) when it is wanted; says which."""
    from tfmusic.cli.main import CliError
    from tfmusic.models import pretrained

    try:
        residual = pretrained.residual_target()
        wanted = None if targets is None else [t for t in targets if t != residual]
        chosen = pretrained.default_models(wanted)
        if not chosen:
            raise CliError("no models ship with this installation: give at least one --model "
                           "(a training run directory or a .keras file)")
        paths = [str(pretrained.model_path(name)) for name in chosen.values()]
    except pretrained.PretrainedError as err:
        raise CliError(str(err)) from err
    if targets is not None and residual not in targets:
        residual = None
    print("tfmusic separate: no --model given, using the shipped models "
          + ", ".join(f"{name} ({target})" for target, name in chosen.items())
          + (f" and {residual} = the mixture minus them" if residual else "")
          + " (tfmusic models info NAME)", file=sys.stderr)
    return paths, residual


# Other areas add entries (e.g. "onnx", a TF Serving client); keep factories' imports lazy.
CHUNK_BACKENDS: dict[str, BackendFactory] = {"keras": _keras_backend}



# --- export/serving backends (owned by the export & serving area; imports stay lazy) ---
def _onnx_backend(args: argparse.Namespace) -> tuple[ChunkFn, list[str]]:
    """ONNX Runtime on an exported model (``--model sep.onnx``); never imports TensorFlow."""
    from tfmusic.cli.main import CliError
    from tfmusic.export.onnx import OnnxExportError, onnx_chunk_backend

    try:
        return onnx_chunk_backend(list(args.model or []), args.targets, getattr(args, "onnx_threads", None))
    except OnnxExportError as err:
        raise CliError(str(err)) from err


def _server_backend(args: argparse.Namespace) -> tuple[ChunkFn, list[str]]:
    """A TF Serving / `tfmusic serve` server over gRPC (``--server HOST:PORT``)."""
    from tfmusic.cli.main import CliError
    from tfmusic.serving.client import server_chunk_backend
    from tfmusic.serving.errors import ServingError

    if not getattr(args, "server", None):
        raise CliError("--backend server needs --server HOST:PORT")
    try:
        fn, keep = server_chunk_backend(args.server, args.server_model, timeout=args.server_timeout,
                                        targets=args.targets, pitch=bool(getattr(args, "transcribe", False)))
    except ServingError as err:
        raise CliError(str(err)) from err

    def separate_chunk(piece: np.ndarray) -> dict:
        try:
            return fn(piece)
        except ServingError as err:
            raise CliError(str(err)) from err

    return separate_chunk, keep


class _ServerAction(argparse.Action):
    """``--server HOST:PORT`` also selects the server backend."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.server = values
        namespace.backend = "server"


CHUNK_BACKENDS.update(onnx=_onnx_backend, server=_server_backend)
# --- end export/serving backends ---


def run_separate(args: argparse.Namespace) -> int:
    from tfmusic.audio.chunking import settings_of
    from tfmusic.audio.io import AudioFileError
    from tfmusic.audio.streams import existing_outputs, output_names, separate_file
    from tfmusic.cli.main import CliError

    if (args.chunk_seconds is not None and args.chunk_seconds <= 0) or args.overlap_seconds < 0:
        raise CliError("need --chunk-seconds > 0 and --overlap-seconds >= 0")
    if args.wiener_iterations < 0:
        raise CliError("--wiener-iterations must be >= 0")
    chunk_seconds = args.chunk_seconds or (10.0 if args.wiener_iterations else 20.0)
    if args.overlap_seconds > chunk_seconds / 2:
        raise CliError("--overlap-seconds must be at most half of the chunk length")
    for path in args.inputs:
        if not Path(path).is_file():
            raise CliError(f"{path}: input file does not exist")
    try:
        names = output_names(args.inputs)
    except ValueError as err:
        raise CliError(str(err)) from None
    separate_chunk, targets = CHUNK_BACKENDS[args.backend](args)
    out_root = Path(args.out)
    clash = existing_outputs(out_root, names, targets)
    if clash and not args.overwrite:
        raise CliError(f"{clash[0]} exists ({len(clash)} stem file(s) of an earlier run would be replaced); "
                       f"use --overwrite or another --out")
    settings = settings_of(separate_chunk)  # the model's own sample rate and STFT framing
    progress = not args.quiet and sys.stderr.isatty()
    if args.transcribe and not 0.0 < args.pitch_threshold < 1.0:
        raise CliError("--pitch-threshold must be in (0, 1)")
    failed: list[str] = []
    for path, name in zip(args.inputs, names):
        curves: dict = {}
        try:
            written, seconds, activity = separate_file(
                path, separate_chunk, out_root / name, settings, chunk_seconds=chunk_seconds,
                overlap_seconds=args.overlap_seconds, subtype=args.subtype, plot=args.plot, progress=progress,
                curves_out=curves, song_rate=args.stem_rate == "song")
        except AudioFileError as err:  # one bad song does not cost the rest of the batch
            print(f"tfmusic separate: error: {err}", file=sys.stderr)
            failed.append(str(path))
            _remove_empty(out_root / name)
            continue
        if args.transcribe:
            from tfmusic.models.transcription import write_transcriptions

            notes = write_transcriptions(out_root / name, curves, settings.sample_rate, settings.hop_length,
                                         args.pitch_threshold)
            if not notes:
                log.warning("--transcribe: no pitch outputs (only IASS+pitch models, `tfmusic train iass_pitch`, "
                            "transcribe)")
            written += notes
        if args.plot and not activity:
            log.warning("--plot: no activity curves (only IASS models predict activity)")
        if not args.quiet:
            print(f"{path}: {seconds:.1f} s, {'+'.join(targets)} -> {', '.join(str(p) for p in written)}")
    if failed:
        raise CliError(f"{len(failed)} of {len(names)} song(s) could not be separated (each named above); "
                       f"the other {len(names) - len(failed)} were written to {out_root}")
    return 0


def _remove_empty(folder: Path) -> None:
    """Drop a song folder that a failed song left empty (no stems are written before success)."""
    try:
        folder.rmdir()
    except OSError:
        pass  # absent, or holding an earlier run's files


def _target_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated target names, e.g. vocals,drums")
    return names


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "separate",
        help="separate songs into stems with IASS / Open-Unmix models (chunked, any length)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="SONG", help="audio files (wav/flac/ogg/aiff; any rate, mono/stereo)")
    parser.add_argument("--model", action="append", metavar="RUN_OR_KERAS",
                        help="training run directory or .keras file; repeat once per target (default: the "
                        "shipped models, `tfmusic models list`)")
    parser.add_argument("--targets", type=_target_list, metavar="A,B",
                        help="targets to separate (default: every model's target); names unnamed models in order")
    parser.add_argument("--residual", default=None, metavar="NAME",
                        help="also write NAME.wav = the mixture minus every target's estimate (e.g. other, for "
                        "MUSDB's four stems; the shipped models do this for 'other')")
    parser.add_argument("--out", default="separated", metavar="DIR", help="output folder (default: %(default)s)")
    parser.add_argument("--chunk-seconds", type=float, default=None,
                        help="chunk length; bounds memory (default: 20, or 10 with Wiener filtering; a 10-minute "
                        "song then peaks well under 2 GB)")
    parser.add_argument("--overlap-seconds", type=float, default=1.5,
                        help="overlap between chunks; its outer thirds (0.5 s by default, more than the IASS "
                        "receptive field) are dropped and the middle third crossfaded (default: %(default)s)")
    parser.add_argument("--wiener-iterations", type=int, default=0,
                        help="multichannel Wiener EM iterations after masking; 0 = plain masking (default: %(default)s)")
    parser.add_argument("--activity-threshold", type=float, default=None,
                        help="IASS: frames with activity probability above this keep their mask (model default 0.5)")
    parser.add_argument("--median-frames", type=int, default=None,
                        help="IASS: odd median-filter length over binarized activity, in frames (model default 21)")
    parser.add_argument("--plot", action="store_true", help="also draw the activity curves to activity.png")
    parser.add_argument("--transcribe", action="store_true",
                        help="IASS+pitch models: also write OUT/<song>/<target>.mid and <target>.pianoroll.npy "
                        "((88, frames) A0..C8, frames gated by the predicted activity); every backend (an ONNX "
                        "export of such a separator carries its pitch, a server is asked for it)")
    parser.add_argument("--pitch-threshold", type=float, default=0.5,
                        help="--transcribe: key probability above which a key is on (default: %(default)s, which "
                        "is the threshold the model chose on its validation split: its probabilities are "
                        "centred on it)")
    parser.add_argument("--stem-rate", choices=("song", "model"), default="song",
                        help="sample rate of the written stems: the song's own (same length as the song; "
                        "default) or the model's (44.1 kHz)")
    parser.add_argument("--subtype", default="FLOAT", choices=["FLOAT", "PCM_16", "PCM_24"],
                        help="WAV sample format of the stems (default: %(default)s; PCM clips at +-1)")
    parser.add_argument("--backend", default="keras", choices=sorted(CHUNK_BACKENDS),
                        help="what runs each chunk (default: %(default)s, in-process Keras)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace stems an earlier run wrote into --out (default: refuse)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    # export/serving area: remote (TF Serving / `tfmusic serve`) and ONNX Runtime backends
    parser.add_argument("--server", action=_ServerAction, metavar="HOST:PORT",
                        help="separate through a TF Serving-compatible gRPC server (implies --backend server)")
    parser.add_argument("--server-model", default="separator", metavar="NAME",
                        help="served model name with --server (default: %(default)s)")
    parser.add_argument("--server-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="deadline per gRPC request with --server (default: %(default)s)")
    parser.add_argument("--onnx-threads", type=int, default=None, metavar="N",
                        help="ONNX Runtime intra-op threads with --backend onnx --model sep.onnx")
    parser.set_defaults(handler=run_separate)

