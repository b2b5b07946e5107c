"""Shared test settings: quiet TensorFlow, CPU only, deterministic hashing."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def gcs_bucket(tmp_path_factory):
    """``gs://tfmusic-test`` on a local Cloud Storage emulator (see tests/_gcs.py)."""
    from tests._gcs import gcs_emulator

    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as bucket:
        yield bucket


@pytest.fixture(scope="session")
def multiworker_pair(tmp_path_factory):
    """One MultiWorkerMirroredStrategy cluster of 2 local processes for the session, run once.

    Each worker trains the toy task of tests/_multiworker_worker.py (3 steps, eval, checkpoints; run
    folder ``run``, weights ``w<index>.npz``), then, under the same strategy, the ``spe3`` run of
    tests/_perf_trainer_worker.py (into ``perf<index>/``). tests/test_training_distributed.py and
    tests/test_perf_trainer_options.py each check their part: one cluster start instead of two.
    Yields ``(folder, [(returncode, stdout, stderr) per worker])``.
    """
    import json
    import socket
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("multiworker")
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]}
    for s in socks:
        s.close()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "tensorflow",
           "PYTHONPATH": str(root)}
    procs = []
    for index in range(2):
        (out / f"perf{index}").mkdir()
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, str(root / "tests" / "_multiworker_worker.py"), "--strategy", "multiworker",
             "--run-dir", str(out / "run"), "--weights-out", str(out / f"w{index}.npz"), "--steps", "3",
             "--then-perf", str(out / f"perf{index}"), json.dumps({"spe3": {"steps_per_execution": 3}})],
            env={**env, "TF_CONFIG": tf_config}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [p.communicate(timeout=400) + (p.returncode,) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    yield out, [(code, stdout, stderr) for stdout, stderr, code in results]


@pytest.fixture(scope="session")
def sdist_once(tmp_path_factory):
    """Beam's ``--setup_file`` staging builds the project sdist once per session, not once per job.

    The first DataflowRunner job builds it for real (Beam's own ``Stager._build_setup_package``:
    ``python -m build --sdist``, else ``setup.py sdist``); later jobs of the session stage a copy
    of that tarball. The project does not change during a session, so the bytes are the same.
    """
    import shutil

    from apache_beam.runners.portability.stager import Stager

    build = Stager._build_setup_package  # a staticmethod, seen through the class: the plain function
    built: dict = {}
    keep = tmp_path_factory.mktemp("sdist")

    def build_once(setup_file, temp_dir, build_setup_args=None):
        key = (os.path.abspath(setup_file), tuple(build_setup_args or ()))
        if key not in built:
            tarball = build(setup_file, temp_dir, build_setup_args)
            built[key] = shutil.copy(tarball, keep / f"{len(built)}-{os.path.basename(tarball)}")
            return tarball
        return shutil.copy(built[key], os.path.join(temp_dir, os.path.basename(built[key]).split("-", 1)[1]))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Stager, "_build_setup_package", staticmethod(build_once))
        yield built


@pytest.fixture(scope="session")
def stems_dir(tmp_path_factory):
    """4 two-second stereo songs (vocals, drums, bass) preprocessed into 1 s TFRecord segments."""
    import numpy as np

    from tfmusic.audio.io import write_audio
    from tfmusic.data.stems.preprocess import PreprocessConfig, preprocess

    root = tmp_path_factory.mktemp("stems")
    rng = np.random.default_rng(0)
    sr, seconds = 44100, 2.0
    t = np.arange(int(sr * seconds)) / sr
    for s in range(4):
        vocals = 0.3 * np.sin(2 * np.pi * (200 + 50 * s) * t) * (t % 1.0 < 0.5)
        drums = 0.2 * rng.standard_normal(t.size) * np.exp(-((t * 4) % 1.0) * 8)
        bass = 0.3 * np.sin(2 * np.pi * 55 * t)
        for name, x in (("vocals", vocals), ("drums", drums), ("bass", bass)):
            write_audio(root / "raw" / f"song{s}" / f"{name}.wav", np.stack([x, 0.8 * x]).astype(np.float32))
    preprocess(root / "raw", root / "stems", layout="folder", seed=0, fractions=(0.5, 0.25, 0.25),
               config=PreprocessConfig(segment_seconds=1.0), progress=False)
    return root / "stems"


IASS_CLI_CONFIG = "activity_weight: 1.5\ntrainer:\n  steps: 99\n  plateau:\n    patience: 3\n"


@pytest.fixture(scope="session")
def iass_cli_run(stems_dir, tmp_path_factory):
    """One 2-step `tfmusic train iass` run for the session, with a config file the flags override,
    ``--histograms`` and ``--profile-steps 2,2``: tests/test_training_separation.py checks the run
    (config, history, metrics, summaries, loading), tests/test_tensorboard_tasks.py its TensorBoard
    telemetry (one IASS training trace instead of two). Yields ``(run folder, stdout, config file)``."""
    import contextlib
    import io

    from tests.test_training_separation import COMMON
    from tfmusic.cli.main import main

    work = tmp_path_factory.mktemp("iass_cli")
    run, cfg = work / "iass", work / "cfg.yaml"
    cfg.write_text(IASS_CLI_CONFIG)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", "iass", "--data", str(stems_dir), "--target", "vocals", "--steps", "2",
                     "--config", str(cfg), "--run-dir", str(run), "--histograms", "--profile-steps", "2,2",
                     *COMMON])
    assert code == 0
    return run, out.getvalue(), cfg
