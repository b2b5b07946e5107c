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
