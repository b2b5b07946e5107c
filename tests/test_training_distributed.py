"""The trainer under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy (2 processes).

Each run is a subprocess: logical devices and the multi-worker runtime must be configured before
TensorFlow initialises, which the test process itself has usually done already.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("_multiworker_worker.py")
ROOT = Path(__file__).resolve().parent.parent


def _env(**extra):
    env = dict(os.environ)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "tensorflow",
                "PYTHONPATH": str(ROOT)})
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_mirrored_two_logical_cpus(tmp_path):
    out = tmp_path / "w.npz"
    proc = subprocess.run(
        [sys.executable, str(WORKER), "--strategy", "mirrored", "--devices", "2", "--run-dir",
         str(tmp_path / "run"), "--weights-out", str(out), "--steps", "2"],
        env=_env(), capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info == {"replicas": 2, "step": 2, "history": 1}
    weights = np.load(out)
    assert int(weights["iterations"]) == 2
    np.testing.assert_allclose(weights["input_mean"], weights["expected_mean"], rtol=1e-5)
    assert all(np.isfinite(weights[k]).all() for k in weights.files)
    assert (tmp_path / "run" / "model.keras").exists()


def test_multiworker_two_processes_end_identical(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, str(WORKER), "--strategy", "multiworker", "--run-dir", str(tmp_path / "run"),
             "--weights-out", str(tmp_path / f"w{index}.npz"), "--steps", "3"],
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=240)
            outputs.append((proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for code, stdout, stderr in outputs:
        assert code == 0, stderr[-3000:]
        assert json.loads(stdout.strip().splitlines()[-1]) == {"replicas": 2, "step": 3, "history": 1}
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert w0.files == w1.files and int(w0["iterations"]) == 3
    np.testing.assert_allclose(w0["input_mean"], w0["expected_mean"], rtol=1e-5)
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
    run = tmp_path / "run"
    # only the chief writes the run directory; the other worker's checkpoints went to scratch
    assert (run / "model.keras").exists() and (run / "history.json").exists()
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == ["ckpt-2.index", "ckpt-3.index"]
    assert not list(run.glob("**/*worker*"))
