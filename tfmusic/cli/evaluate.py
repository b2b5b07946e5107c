"""`tfmusic evaluate` (BSS Eval + activity on held-out songs) and `tfmusic report` (tables, figures)."""

from __future__ import annotations

import argparse
import json
import sys

from tfmusic.cli.main import CliError

EVALUATE_EPILOG = """\
Results: OUT/<method>/<split>/<track>.json (museval-compatible: targets -> frames -> metrics,
plus SI-SDR, skipped targets and activity curves), OUT/manifest.json (counts in/out/failed),
OUT/summary.json and OUT/summary.md (median over frames, then over tracks).

Each target is scored against (target, rest = mixture - target). Windows where the target, the
rest or the estimate is silent are NaN and ignored (museval's rule); targets absent from a song
(reference below -100 dBFS) are listed as skipped. Oracles: ibm (ideal binary mask), irm (ideal
ratio mask), mix (the mixture as estimate = input-SDR, the floor).

examples:
  tfmusic evaluate --model iass=runs/iass_bass --model umx=runs/umx_bass --data data/stems --out eval
  tfmusic evaluate --targets bass,drums --oracles ibm,irm,mix --data data/stems --out eval_oracles
  tfmusic evaluate --model runs/iass_bass --data data/stems --out eval --beam \\
      --direct_num_workers=2 --direct_running_mode=multi_processing
  tfmusic evaluate --model iass=gs://BUCKET/runs/iass_bass --data gs://BUCKET/stems \\
      --out gs://BUCKET/eval --beam --runner=DataflowRunner --project=P --region=R \\
      --temp_location=gs://BUCKET/tmp --setup_file=./setup.py

Result files are staged and renamed into place when every song is done; manifest.json is written
last, so a killed run leaves no results a reader would trust.
"""


def _float_or_none(text: str) -> float | None:
    value = float(text)
    return None if value <= 0 else value


def run_evaluate(args: argparse.Namespace) -> int:
    from tfmusic import storage
    from tfmusic.beam_io import CountsError
    from tfmusic.data.stems.splits import tracks_for_split
    from tfmusic.evaluation import pipeline

    extra = getattr(args, "extra_args", [])
    if extra and not args.beam:
        raise CliError(f"unrecognized arguments: {' '.join(extra)} (Beam flags need --beam)")
    try:
        storage.check_path(args.out, what="--out")  # before any work: never a local folder named gs:
        methods = [pipeline.parse_method(m) for m in args.model or []]
        oracles = [o.strip() for o in args.oracles.split(",") if o.strip()] if args.oracles else []
        targets = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else None
        config = pipeline.EvaluationConfig(methods=methods, oracles=oracles, targets=targets, mode=args.mode,
                                           win=args.win, hop=args.hop, max_seconds=args.max_seconds)
        tracks = tracks_for_split(args.data, args.split)
    except ValueError as err:
        raise CliError(str(err)) from err
    if args.limit:
        tracks = tracks[: args.limit]
    if not tracks:
        raise CliError(f"{args.data}: split {args.split!r} has no songs")
    try:
        manifest = pipeline.evaluate_dataset(tracks, config, args.out, args.split, beam=args.beam,
                                             beam_args=extra, progress=False if args.quiet else None)
    except (ValueError, CountsError) as err:
        raise CliError(str(err)) from err
    if manifest is None:  # the runner wrote a job template (--template_location) and ran nothing
        print(json.dumps({"template": True, "out": str(args.out)}))
        return 0
    counts = manifest["counts"]
    print(json.dumps({"counts": counts, "failed": manifest["failed"], "out": str(args.out)}, indent=1))
    if counts["out"]:
        print(pipeline.summary_text(args.out))
    for failure in manifest["failed"]:  # one line each, naming the song and (for audio) the file
        print(f"tfmusic evaluate: error: {_failure_text(failure)}", file=sys.stderr)
    if counts["failed"]:
        raise CliError(f"{counts['failed']} of {counts['in']} song(s) could not be evaluated (each named above); "
                       f"the other {counts['out']} were scored into {args.out}")
    return 0


def _failure_text(failure) -> str:
    if isinstance(failure, dict):
        return f"song {failure.get('track', '?')}: {failure.get('reason') or failure.get('error') or failure}"
    return str(failure)


def run_report(args: argparse.Namespace) -> int:
    from tfmusic.evaluation import report

    try:
        written = report.write_report(args.results, args.out, track=args.track, baseline=args.baseline)
    except ValueError as err:
        raise CliError(str(err)) from err
    for path in written:
        print(path)
    return 0


def register(subparsers) -> None:
    ev = subparsers.add_parser(
        "evaluate", help="BSS Eval (museval v4 / mir_eval v3), SI-SDR, oracles and activity F1/AUC",
        description="Separate the held-out songs with each model and score them, with oracle "
                    "baselines computed by the same code.",
        epilog=EVALUATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--model", action="append", metavar="[NAME=]RUN[,RUN...]",
                    help="a method: .keras files or training run dirs (one per target), optionally named; "
                         "repeat for several methods")
    ev.add_argument("--data", required=True, help="preprocessed multitrack folder (tfmusic data preprocess; "
                                                  "local or gs://...)")
    ev.add_argument("--split", default="test", choices=("train", "valid", "test"), help="songs to score (default test)")
    ev.add_argument("--out", required=True, help="results folder (local or gs://...)")
    ev.add_argument("--oracles", default="ibm,irm,mix",
                    help="comma list of ibm, irm, mix ('' for none; default ibm,irm,mix)")
    ev.add_argument("--targets", help="comma list of targets (default: those the models estimate; "
                                      "required without --model)")
    ev.add_argument("--mode", default="v4", choices=("v4", "v3"),
                    help="v4: museval (filters over the whole track); v3: mir_eval bss_eval_sources "
                         "(filters per window, no ISR)")
    ev.add_argument("--win", type=_float_or_none, default=1.0, help="window in seconds, 0 = whole track (default 1)")
    ev.add_argument("--hop", type=_float_or_none, default=None, help="hop in seconds (default: = window)")
    ev.add_argument("--max-seconds", type=_float_or_none, default=None,
                    help="score only the first N seconds of each song (quick checks; default whole songs)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N songs of the split")
    ev.add_argument("--beam", action="store_true",
                    help="run as a Beam job, one song per element; extra --flags go to Beam")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(handler=run_evaluate, accepts_extra_args=True)

    rp = subparsers.add_parser(
        "report", help="markdown summary and figures from `tfmusic evaluate` results",
        description="Writes report.md (SDR/SIR/SAR/ISR/SI-SDR table, per-song SDR, activity scores), "
                    "sdr_boxplot.png (per-instrument SDR over songs for every method), "
                    "metrics_bars.png and activity_<song>.png (predicted activity vs labels).")
    rp.add_argument("--results", required=True, help="folder written by `tfmusic evaluate` (local or gs://...)")
    rp.add_argument("--out", required=True, help="report folder (local or gs://...)")
    rp.add_argument("--track", help="song for the activity figure (default: the first with activity curves)")
    rp.add_argument("--baseline", default=None,
                    help="method the others are compared with in the per-instrument claim table "
                         "(default: an Open-Unmix-like method name when present)")
    rp.set_defaults(handler=run_report)
