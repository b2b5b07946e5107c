"""The kill chain of test_reliability_kill.py through the real CLIs: ``tfmusic train iass`` and
``tfmusic vae train``, each killed during a best-model write, mid-step, during a checkpoint
write and during the ``model.keras`` export, then resumed with ``--resume``; the end must be
bit-identical to an uninterrupted ``--deterministic`` run.

About a minute of CPU each (six CLI processes), so they run in ``make reliability``
(``TFMUSIC_RELIABILITY=1``), not in ``make test``; test_reliability_kill.py is the short version.
"""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import _reliability_worker as worker

tf = pytest.importorskip("tensorflow")

pytestmark = [pytest.mark.skipif(os.environ.get("TFMUSIC_RELIABILITY") != "1",
                                 reason="long: run with make reliability (TFMUSIC_RELIABILITY=1)"),
              pytest.mark.timeout(3600)]
ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "tfmusic"]


def _run(args, fault=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0")
    env.pop("TFMUSIC_FAULT_POINT", None)
    if fault:
        env["TFMUSIC_FAULT_POINT"] = fault
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=3000, cwd=ROOT,
                          check=False)


def _tensors(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(str(prefix))
            if "save_counter" not in name and "OBJECT_GRAPH" not in name}


def _latest(run):
    return int(Path(tf.train.latest_checkpoint(str(run / "checkpoints"))).name.split("-")[1])


def _truncate(paths):
    """What a torn write leaves: the first bytes of each file."""
    for path in paths:
        Path(path).write_bytes(Path(path).read_bytes()[:7])


FAULTS = ["best-write:1", "train-step:3", "checkpoint-write:1", "model-export:1"]


def kill_chain(first, resume, reference: Path, run: Path, steps: int, record) -> None:
    """Kill ``first`` while it writes the best model of the first evaluation (step 2: always an
    improvement, so the kill always fires; whether later evaluations improve depends on the data),
    then each ``resume`` mid-step 3, during ckpt-4's write and during the export; a last ``resume``
    finishes. Files the killed writes left are truncated, as a torn write would leave them, so a
    resume that picked one up would fail. ``record`` (a ``FaultRecord`` of :data:`FAULTS`) gets each
    fault the next process got past, and what the end lacks against ``reference``."""
    ckpts = run / "checkpoints"
    proc = _run(first(run) + ["--steps", str(steps)], "best-write:1")
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert tf.train.latest_checkpoint(str(ckpts)) is None and not (run / "model.keras").exists()
    assert tf.train.latest_checkpoint(str(ckpts / "best")) is None  # best-2 written, not committed
    _truncate((ckpts / "best").glob("best-2.*"))

    proc = _run(resume(run), "train-step:3")  # no checkpoint yet: starts again from step 0
    assert proc.returncode == -9, proc.stderr[-3000:]
    record.survived("best-write:1")
    assert _latest(run) == 2 and not (run / "model.keras").exists()

    proc = _run(resume(run), "checkpoint-write:1")
    assert proc.returncode == -9, proc.stderr[-3000:]
    record.survived("train-step:3")
    assert (ckpts / "ckpt-4.index").is_file() and _latest(run) == 2  # written, not committed
    _truncate(ckpts.glob("ckpt-4.*"))

    proc = _run(resume(run), "model-export:1")
    assert proc.returncode == -9, proc.stderr[-3000:]
    record.survived("checkpoint-write:1")
    assert _latest(run) == steps and not (run / "model.keras").exists()
    proc = _run(resume(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    if (run / "model.keras").is_file():
        record.survived("model-export:1")
    record.lost = end_differences(reference, run, steps)
    assert_same_end(reference, run, steps)


def _end(run: Path, steps: int) -> tuple[dict, list, str]:
    for module in ("tfmusic.models.iass", "tfmusic.training.vae"):  # register the classes model.keras names
        importlib.import_module(module)
    from tfmusic.models.files import load_keras_file

    weights = load_keras_file(run / "model.keras").get_weights() if (run / "model.keras").is_file() else []
    history = (run / "history.json").read_text() if (run / "history.json").is_file() else ""
    return _tensors(run / "checkpoints" / f"ckpt-{steps}"), weights, history


def end_differences(reference: Path, run: Path, steps: int) -> int:
    """Tensors of the last checkpoint, exported weights and the history file of ``run`` that are
    missing or not bit-identical to ``reference``'s."""
    (ta, wa, ha), (tb, wb, hb) = _end(reference, steps), _end(run, steps)
    return worker.differing(ta, tb) + worker.differing(wa, wb) + int(ha != hb)


def assert_same_end(reference: Path, run: Path, steps: int) -> None:
    """Last checkpoint, history and exported model.keras of ``run`` equal ``reference``'s, bit for bit."""
    (ta, wa, ha), (tb, wb, hb) = _end(reference, steps), _end(run, steps)
    assert ta.keys() == tb.keys() and ta
    for key in ta:
        np.testing.assert_array_equal(ta[key], tb[key], err_msg=key)
    assert len(wa) == len(wb) > 0
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)
    assert not (run / ".model.partial.keras").exists()
    assert ha == hb


@pytest.fixture(scope="module")
def stems_dir(tmp_path_factory):
    from tfmusic.audio.io import write_audio
    from tfmusic.data.stems.preprocess import PreprocessConfig, preprocess

    root = tmp_path_factory.mktemp("stems")
    rng = np.random.default_rng(0)
    t = np.arange(88200) / 44100
    for s in range(4):
        for name, x in (("vocals", 0.3 * np.sin(2 * np.pi * (200 + 50 * s) * t) * (t % 1.0 < 0.5)),
                        ("drums", 0.2 * rng.standard_normal(t.size)), ("bass", 0.3 * np.sin(2 * np.pi * 55 * t))):
            write_audio(root / "raw" / f"song{s}" / f"{name}.wav", np.stack([x, 0.8 * x]).astype(np.float32))
    preprocess(root / "raw", root / "stems", layout="folder", seed=0, fractions=(0.5, 0.25, 0.25),
               config=PreprocessConfig(segment_seconds=1.0), progress=False)
    return root / "stems"


def test_train_iass_cli_kill_chain(stems_dir, tmp_path):
    def first(run):
        return ["train", "iass", "--data", str(stems_dir), "--target", "vocals", "--run-dir", str(run),
                "--batch-size", "2", "--segment-seconds", "0.5", "--eval-every", "2", "--eval-steps", "1",
                "--stats-batches", "1", "--deterministic", "--set", "trainer.checkpoint_every=2", "--quiet"]

    def resume(run):
        return ["train", "iass", "--run-dir", str(run), "--resume", "--quiet"]

    proc = _run(first(tmp_path / "reference") + ["--steps", "6"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    with worker.fault_log("tfmusic train iass, SIGKILL + --resume, bit-identical end", FAULTS) as record:
        kill_chain(first, resume, tmp_path / "reference", tmp_path / "run", 6, record)


def test_vae_train_cli_kill_chain(tmp_path):
    def first(run):
        return ["vae", "train", "--model", "mnist", "--objective", "ar", "--batch-size", "4", "--z-dim", "8",
                "--eval-every", "2", "--eval-steps", "1", "--deterministic", "--set",
                "trainer.checkpoint_every=2", "--out", str(run), "--quiet"]

    def resume(run):  # vae train resumes with the same flags (see its --help)
        return first(run) + ["--steps", "6", "--resume"]

    proc = _run(first(tmp_path / "reference") + ["--steps", "6"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    with worker.fault_log("tfmusic vae train, SIGKILL + --resume, bit-identical end", FAULTS) as record:
        kill_chain(first, resume, tmp_path / "reference", tmp_path / "run", 6, record)
