"""Mirrored training (2 logical CPUs) ends with the weights of a single-device run on the same
global batch: the replicas do not just agree with each other, they compute the right update."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "_strategy_parity_worker.py"


def _run(tmp_path, name, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow",
               PYTHONPATH=str(ROOT))
    env.pop("TF_CONFIG", None)
    out = tmp_path / f"{name}.npz"
    proc = subprocess.run([sys.executable, str(WORKER), "--run-dir", str(tmp_path / name), "--weights-out", str(out),
                           *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out)


def test_mirrored_weights_equal_single_device_weights(tmp_path):
    single = _run(tmp_path, "single")
    mirrored = _run(tmp_path, "mirrored", "--strategy", "mirrored", "--devices", "2")
    assert int(single["replicas"]) == 1 and int(mirrored["replicas"]) == 2
    np.testing.assert_allclose(mirrored["mean"], single["mean"], rtol=1e-6)
    weights = [k for k in single.files if k.startswith("arr_")]
    assert len(weights) == 4
    moved = 0
    for key in weights:
        np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-5, atol=1e-6, err_msg=key)
        moved += not np.allclose(single[key], 0.0)
    assert moved >= 2  # trained weights, not all-zero biases only
