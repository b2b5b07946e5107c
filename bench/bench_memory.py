"""Peak memory of one IASS training step (6 s mono, MSE + 2 x BCE, AdamW), measured in a subprocess.

Each batch size runs in a fresh process (``ru_maxrss`` is a high-water mark) that builds the task,
takes 2 training steps on a fixed synthetic batch and prints its peak RSS (and the second step's
time, with the load). Batches: ``TFMUSIC_BENCH_MEMORY_BATCHES`` (default ``2,4,16``); without
recomputation only batches <= 4 are run and batch 16 is extrapolated linearly (activations grow with
the batch, weights and optimizer state do not), because it would push a shared box into an OOM
kill: that row is marked extrapolated and gets no verdict (``met`` stays empty). With recomputation
(``trainer.recompute``, the default) batch 16 is measured. The 8 GB bound is the target; no
reference is measured, so the reference and ratio columns stay empty.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from timing import load_average

TARGET_GB = 8.0


def _child(batch: int, policy: str, recompute: bool = False) -> None:
    """Runs in the subprocess: 2 steps, then print the peak RSS (GB) and the second step's time."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    from bench_training_precision import _task

    from tfmusic.training.recompute import recompute_layers

    task, data = _task("iass", 1, 6.0, batch, policy)
    if recompute:
        recompute_layers(task.recompute_layers())
    step = tf.function(task.train_step)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    float(step(data)["loss"])
    began = time.perf_counter()
    loss = float(step(data)["loss"])
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"batch": batch, "policy": policy, "recompute": recompute, "peak_gb": peak,
                      "before_steps_gb": base, "step_s": seconds, "loss": loss, "load": load_average()}))


def _measure(batch: int, policy: str, recompute: bool) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", str(batch), policy] + (["recompute"] if recompute else []),
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=3600)
    if proc.returncode != 0:
        return {"batch": batch, "policy": policy, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200],
                "returncode": proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(out_dir: Path) -> list[dict]:
    """One row per variant: the trainer default (blocks recomputed), fp32 without it (batch 16 there is
    extrapolated, not measured) and mixed_bfloat16 with it."""
    batches = [int(b) for b in os.environ.get("TFMUSIC_BENCH_MEMORY_BATCHES", "2,4,16").split(",")]
    rows = []
    for policy, recompute in (("float32", True), ("float32", False), ("mixed_bfloat16", True)):
        points = [_measure(b, policy, recompute) for b in batches if recompute or b <= 4]
        good = [p for p in points if "peak_gb" in p]
        name = f"{policy}, {'blocks recomputed (trainer default)' if recompute else 'trainer.recompute=false'}"
        if not good:
            rows.append({"what": f"IASS training peak RSS, {name}", "notes": f"failed: {points}"})
            continue
        measured = any(p["batch"] == 16 for p in good)
        if measured:
            at16, how = next(p["peak_gb"] for p in good if p["batch"] == 16), "measured"
        elif len(good) >= 2:
            slope, intercept = np.polyfit([p["batch"] for p in good], [p["peak_gb"] for p in good], 1)
            at16, how = (float(intercept + 16 * slope),
                         f"EXTRAPOLATED, not measured: {intercept:.2f} GB + {slope:.2f} GB/example (no verdict)")
        else:
            at16, how = float("nan"), "one point only"
        rows.append({
            "what": f"IASS training peak RSS, batch 16 x 6 s mono, {name}" + ("" if measured else " (extrapolated)"),
            "ours": at16, "reference": None, "unit": "GB", "ratio": None, "target": f"< {TARGET_GB:g} GB",
            # only a measured peak decides; an extrapolation is reported, never met or missed
            "met": bool(at16 < TARGET_GB) if measured else None,
            "notes": f"{how}; no reference measured (the bound is the target); measured peaks " + ", ".join(
                f"b{p['batch']}: {p['peak_gb']:.2f}" if "peak_gb" in p else f"b{p['batch']}: {p['error']}"
                for p in points) + " GB (subprocess ru_maxrss, 2 steps; peak memory does not depend on load); "
                f"step s " + ", ".join(f"b{p['batch']}: {p['step_s']:.1f}" for p in good) +
                f" at load {', '.join(str(p['load']) for p in good)}"})
    return rows


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), sys.argv[3], sys.argv[4:] == ["recompute"])
    else:  # pragma: no cover
        for row in run(Path(".")):
            print(row)
