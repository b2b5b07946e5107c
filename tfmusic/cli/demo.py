"""`tfmusic demo`: the main job end to end on embedded defaults (what `make demo` runs).

Every stage is a sequence of ordinary `tfmusic` commands run as subprocesses, so the demo
exercises exactly what users run, and a stage's memory is returned when it ends. The output
folder ends up holding the dMelodies TFRecords, a synthesized multitrack set, trained IASS and
Open-Unmix runs, separated stems (and the same song separated by the shipped models into drums,
bass, vocals and other), an evaluation report, an AR-VAE run with a traversal picture, and an
exported model repository served over gRPC.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


def first_test_song(stems_dir: str) -> str:
    """The mixture file of the first held-out song (known only after preprocessing)."""
    from tfmusic.data.stems.splits import tracks_for_split

    tracks = tracks_for_split(stems_dir, "test")
    if not tracks or tracks[0].mixture is None:
        raise SystemExit(f"demo: no test song with a mixture file in {stems_dir}")
    return str(tracks[0].mixture)


def serving_config() -> list[str]:
    """``--config serving/models.config`` when run from a source checkout (what `make demo` does: the repo's
    TF Serving config, version policies and labels included); elsewhere (an installed package) the server
    serves the exported repository on its own, newest version of each model."""
    config = Path("serving/models.config")
    return ["--config", str(config)] if config.is_file() else []


Command = list[str] | Callable[[], list[str]]


def shipped_separation(o: str) -> list[Command]:
    """With shipped models installed: the same song separated by them into drums, bass, vocals and
    other (a real separation, next to the seconds-long demo training)."""
    from tfmusic.models import pretrained

    if not pretrained.default_models():
        return []
    return [lambda: ["separate", first_test_song(f"{o}/stems"), "--out", f"{o}/separated_shipped", "--plot",
                     "--overwrite", "--quiet"]]


def stages(out: Path, tiny: bool = False) -> list[tuple[str, list[Command]]]:
    """(stage name, commands) in order; a command is a `tfmusic` argument list, or a function
    returning one when it depends on what earlier stages wrote. ``tiny``: the same commands on the
    smallest sizes that still exercise every stage (the smoke test; results mean nothing)."""
    o = str(out)
    size = (lambda full, small: small if tiny else full)
    brief_training = ["--steps", size("20", "2"), "--batch-size", size("4", "2"), "--segment-seconds",
                      size("3", "1"), "--eval-every", size("10", "2"), "--eval-steps", size("2", "1"),
                      "--stats-batches", size("4", "1"), "--quiet"]
    dmelodies_size = ["--limit", "300", "--num-shards", "1,1,1", "--quiet"] if tiny else []
    return [
        ("dmelodies", [
            ["dmelodies", "generate", "--out", f"{o}/dmelodies", *dmelodies_size,
             "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
            ["dmelodies", "info", f"{o}/dmelodies"],
            ["dmelodies", "export-midi", "--data", f"{o}/dmelodies", "--indices", size("0,1,2999,123456", "0,1"),
             "--out", f"{o}/dmelodies_examples", "--png"],
        ]),
        ("multitrack", [
            ["data", "synthesize", "--out", f"{o}/synth", "--songs", size("12", "5"), "--seed", "0",
             *(["--seconds", "5"] if tiny else [])],
            ["data", "preprocess", "--input", f"{o}/synth", "--out", f"{o}/stems", "--splits", "0.6,0.2,0.2"],
            ["data", "inspect", f"{o}/stems"],
        ]),
        ("separation", [
            ["train", "iass", "--data", f"{o}/stems", "--target", "drums", "--run-dir", f"{o}/runs/iass-drums",
             *brief_training],
            ["train", "umx", "--data", f"{o}/stems", "--target", "drums", "--run-dir", f"{o}/runs/umx-drums",
             *brief_training],
            lambda: ["separate", first_test_song(f"{o}/stems"), "--model", f"{o}/runs/iass-drums",
                     "--out", f"{o}/separated", "--plot", "--overwrite", "--quiet"],
            *shipped_separation(o),
        ]),
        ("evaluation", [
            ["evaluate", "--model", f"IASS={o}/runs/iass-drums", "--model", f"Open-Unmix={o}/runs/umx-drums",
             "--data", f"{o}/stems", "--split", "test", "--out", f"{o}/eval", "--limit", "2",
             "--max-seconds", size("6", "2"), "--quiet"],
            ["report", "--results", f"{o}/eval", "--out", f"{o}/report", "--baseline", "Open-Unmix"],
        ]),
        ("ar-vae", [
            ["dmelodies", "generate", "--out", f"{o}/vae_dmelodies", "--limit", size("6000", "600"),
             "--num-shards", size("2,1,1", "1,1,1"), "--quiet"],
            ["vae", "train", "--model", "dmelodies-cnn", "--objective", "ar", "--data", f"{o}/vae_dmelodies",
             "--out", f"{o}/runs/vae-ar", "--steps", size("300", "2"), "--batch-size", size("64", "16"),
             "--lr", "2e-3", "--eval-every", size("150", "2"), "--eval-steps", size("4", "1"), "--quiet"],
            ["vae", "traverse", f"{o}/runs/vae-ar", "--dim", "3", "--out", f"{o}/vae_traversal"],
        ]),
        ("export-serve", [
            ["export", "saved-model", "--model", f"{o}/runs/iass-drums", "--repo", f"{o}/models",
             "--name", "separator", "--version", "1", "--overwrite"],
            ["export", "saved-model", "--model", f"{o}/runs/vae-ar", "--repo", f"{o}/models", "--name", "vae",
             "--version", "1", "--overwrite"],
            ["export", "onnx", "--saved-model", f"{o}/models/separator", "--out", f"{o}/onnx/separator.onnx"],
            lambda: ["serve", "--models", f"{o}/models", *serving_config(), "--port", "0",
                     "--run", "separate", first_test_song(f"{o}/stems"), "--server", "{address}",
                     "--out", f"{o}/separated_grpc", "--overwrite", "--quiet"],
            lambda: ["separate", first_test_song(f"{o}/stems"), "--backend", "onnx",
                     "--model", f"{o}/onnx/separator.onnx", "--out", f"{o}/separated_onnx", "--overwrite", "--quiet"],
        ]),
    ]


def run_command(argv: list[str]) -> float:
    cmd = [sys.executable, "-m", "tfmusic", *argv]
    print(f"\n$ tfmusic {shlex.join(argv)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(cmd)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"demo: command failed with exit status {result.returncode}: tfmusic {shlex.join(argv)}")
    return elapsed


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    selected = stages(out, tiny=args.tiny)
    if args.only:
        selected = [s for s in selected if s[0] in args.only]
    timings: list[tuple[str, float]] = []
    for name, commands in selected:
        print(f"\n=== demo stage: {name}", flush=True)
        timings.append((name, sum(run_command(c() if callable(c) else c) for c in commands)))
    print("\n=== demo finished; wall time per stage:")
    for name, seconds in timings:
        print(f"  {name:<14} {seconds:8.1f} s")
    print(f"  {'total':<14} {sum(t for _, t in timings):8.1f} s   (outputs in {out}/)")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the end-to-end demo on embedded defaults",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--only", nargs="*", metavar="STAGE", help="run only these stages")
    parser.add_argument("--tiny", action="store_true",
                        help="smallest sizes that still run every command (smoke test; meaningless results)")
    parser.set_defaults(handler=run_demo)
