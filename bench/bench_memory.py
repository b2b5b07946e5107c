"""Peak memory of one IASS training step (6 s mono, MSE + 2 x BCE, AdamW), measured in a subprocess.

Each batch size runs in a fresh process (``ru_maxrss`` is a high-water mark) that builds the task,
takes 2 training steps on a fixed synthetic batch and prints its peak RSS. Batch 16 is run only when
the machine has room (``TFMUSIC_BENCH_MEMORY_BATCHES``, default ``1,2,4``; the target batch 16 is
extrapolated linearly from the measured points when it is not run: activations grow with the batch,
weights and optimizer state do not). A shared 2-core box with other jobs must not be pushed into
an OOM kill, hence the default. ``precision`` runs the same under ``mixed_bfloat16``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
from timing import load_average

TARGET_GB = 8.0


def _child(batch: int, policy: str) -> None:
    """Runs in the subprocess: 2 steps, then print the peak RSS (GB)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    from bench_training_precision import _task

    task, data = _task("iass", 1, 6.0, batch, policy)
    step = tf.function(task.train_step)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for _ in range(2):
        float(step(data)["loss"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"batch": batch, "policy": policy, "peak_gb": peak, "before_steps_gb": base}))


def _measure(batch: int, policy: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", str(batch), policy], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=1800)
    if proc.returncode != 0:
        return {"batch": batch, "policy": policy, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200],
                "returncode": proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(out_dir: Path) -> list[dict]:
    batches = [int(b) for b in os.environ.get("TFMUSIC_BENCH_MEMORY_BATCHES", "1,2,4").split(",")]
    rows = []
    for policy in ("float32", "mixed_bfloat16"):
        points = [_measure(b, policy) for b in batches]
        good = [p for p in points if "peak_gb" in p]
        if not good:
            rows.append({"what": f"IASS training peak RSS, {policy}", "notes": f"failed: {points}"})
            continue
        if any(p["batch"] == 16 for p in good):
            at16, how = next(p["peak_gb"] for p in good if p["batch"] == 16), "measured"
        elif len(good) >= 2:
            slope, intercept = np.polyfit([p["batch"] for p in good], [p["peak_gb"] for p in good], 1)
            at16, how = float(intercept + 16 * slope), f"extrapolated: {intercept:.2f} GB + {slope:.2f} GB/example"
        else:
            at16, how = float("nan"), "one point only"
        rows.append({
            "what": f"IASS training peak RSS, batch 16 x 6 s mono, {policy}", "ours": at16, "reference": TARGET_GB,
            "unit": "GB", "ratio": TARGET_GB / at16 if at16 == at16 else None, "target": f"< {TARGET_GB:g} GB",
            "met": bool(at16 < TARGET_GB) if at16 == at16 else None,
            "notes": f"{how}; measured peaks " + ", ".join(
                f"b{p['batch']}: {p['peak_gb']:.2f}" if "peak_gb" in p else f"b{p['batch']}: {p['error']}"
                for p in points) + f" GB (subprocess ru_maxrss, 2 steps); load {load_average()}"})
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(int(sys.argv[2]), sys.argv[3])
    else:  # pragma: no cover
        for row in run(Path(".")):
            print(row)
