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
