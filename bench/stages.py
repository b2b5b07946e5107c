"""Stage runner shared by the experiment scripts (imported as `stages`: bench/ is on sys.path when a
bench script runs): every stage is an ordinary `tfmusic` command in a subprocess, logged with its
wall time, and the experiment stops at the first failing stage."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time


def load_average() -> str:
    """The 1/5/15-minute load averages (every experiment records the load it ran under)."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def run_tfmusic(argv: list[str], log: list[dict]) -> float:
    """Run one `tfmusic` command; abort the experiment with its exit status if it fails."""
    cmd = [sys.executable, "-m", "tfmusic", *argv]
    print(f"\n$ tfmusic {shlex.join(argv)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(cmd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - start
    log.append({"command": "tfmusic " + shlex.join(argv), "seconds": round(seconds, 1), "status": result.returncode})
    if result.returncode != 0:
        raise SystemExit(f"experiment: command failed with exit status {result.returncode}: "
                         f"tfmusic {shlex.join(argv)}")
    return seconds
