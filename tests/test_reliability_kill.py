"""SIGKILL the trainer at its worst moments (``tfmusic.training.faults``); resumes end bit-identical.

One run of the toy task is killed four times in a row, each resume picking up where the previous
process died: mid-step, after the best model's files but before the next full checkpoint,
after a checkpoint's files but before its pointer, and while ``model.keras`` is being written. The
final resume must end with exactly the weights, history and ``model.keras`` of an uninterrupted
run, and no half-written checkpoint or export is ever read (the uncommitted files are even
truncated before the next resume). The CLI versions (``tfmusic train``, ``tfmusic vae train``) run
in ``make reliability`` (TFMUSIC_RELIABILITY=1), they take a minute each on 2 cores.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from tests import _reliability_worker as worker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _env(fault=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow",
               PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
    env.pop("TFMUSIC_FAULT_POINT", None)
    if fault:
        env["TFMUSIC_FAULT_POINT"] = fault
    return env


def _killed_at(run_dir, fault, resume):
    cmd = [sys.executable, str(ROOT / "tests" / "_reliability_worker.py"), "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd + (["--resume"] if resume else []), env=_env(fault), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert f"fault injected: SIGKILL at {fault.split(':')[0]}" in proc.stderr


def _tensors(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(str(prefix))
            if "save_counter" not in name and "OBJECT_GRAPH" not in name}


def _assert_same(a, b):
    assert a.keys() == b.keys() and a
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _latest(run):
    return Path(tf.train.latest_checkpoint(str(run / "checkpoints"))).name


def _truncate(paths):
    for path in paths:
        Path(path).write_bytes(Path(path).read_bytes()[:7])


def test_four_kills_then_resume_end_bit_identical(tmp_path):
    reference = worker.train(str(tmp_path / "reference"), resume=False)
    best_steps = [h["step"] for h in reference.history if h["best"]]
    assert best_steps[:3] == [2, 4, 6], reference.history  # the scenario below relies on these
    run = tmp_path / "run"
    faults = ["train-step:3", "checkpoint-write:1", "best-write:2", "model-export:1"]
    with worker.fault_log("trainer (toy task), SIGKILL + resume, bit-identical end", faults) as record:
        # (a) mid-step: step 3's update is computed, nothing after ckpt-2 is on disk
        _killed_at(run, "train-step:3", resume=False)
        assert _latest(run) == "ckpt-2" and not (run / "model.keras").exists()

        # (b) checkpoint write: ckpt-4's files are complete but its pointer is not: resume ignores them
        _killed_at(run, "checkpoint-write:1", resume=True)
        record.survived("train-step:3")  # the resume after it trained on to the next fault
        ckpts = run / "checkpoints"
        assert (ckpts / "ckpt-4.index").is_file() and _latest(run) == "ckpt-2"
        assert Path(tf.train.latest_checkpoint(str(ckpts / "best"))).name == "best-2"
        _truncate([*ckpts.glob("ckpt-4.*"), *(ckpts / "best").glob("best-4.*")])  # as a torn write would

        # (c) best export: best-6 is written but no full checkpoint commits it yet
        _killed_at(run, "best-write:2", resume=True)
        record.survived("checkpoint-write:1")
        assert _latest(run) == "ckpt-4" and (ckpts / "best" / "best-6.index").is_file()
        assert Path(tf.train.latest_checkpoint(str(ckpts / "best"))).name == "best-4"
        _truncate((ckpts / "best").glob("best-6.*"))

        # (d) model export: training is done (ckpt-8) but model.keras is only half there, under a temp name
        _killed_at(run, "model-export:1", resume=True)
        record.survived("best-write:2")
        assert _latest(run) == "ckpt-8" and not (run / "model.keras").exists()
        assert (run / ".model.partial.keras").is_file()

        resumed = worker.train(str(run), resume=True)
        if resumed.step == worker.STEPS and (run / "model.keras").is_file():
            record.survived("model-export:1")
        # lost: every tensor, exported weight or history record not bit-identical to the undisturbed run
        a = keras.saving.load_model(Path(reference.run_dir) / "model.keras").get_weights()
        b = keras.saving.load_model(run / "model.keras").get_weights()
        ends = _tensors(reference.run_dir + "/checkpoints/ckpt-8"), _tensors(ckpts / "ckpt-8")
        record.lost = worker.differing(*ends) + worker.differing(a, b) + worker.differing(reference.history,
                                                                                           resumed.history)
        assert resumed.start_step == resumed.step == worker.STEPS
        _assert_same(*ends)
        assert resumed.history == reference.history and resumed.best_step == reference.best_step
        assert json.loads((run / "history.json").read_text()) == {"history": reference.history}
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        assert not (run / ".model.partial.keras").exists()
    assert sorted(p.name for p in (ckpts / "best").iterdir()) == [
        "best-%d.data-00000-of-00001" % reference.best_step, "best-%d.index" % reference.best_step, "checkpoint"]
