"""Clean operations: a normal CPU run prints nothing on stderr; --version; --log-format json."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tfmusic.logs import is_native_noise


def _user_env():
    """The environment of a user's shell: none of the test suite's TensorFlow settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    env["KERAS_BACKEND"] = "tensorflow"
    return env


def _tfmusic(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tfmusic", *args], capture_output=True, text=True,
                          env=_user_env(), cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def tiny_model_and_song(tmp_path_factory):
    from tfmusic.models.openunmix import OpenUnmix

    root = tmp_path_factory.mktemp("sep")
    OpenUnmix(hidden_size=16, nb_layers=1, target="bass").build_for_frames().save(root / "umx_bass.keras")
    rng = np.random.default_rng(0)
    sf.write(root / "song.wav", 0.1 * rng.standard_normal((44100, 2)).astype(np.float32), 44100)
    return root


def test_quiet_separate_prints_nothing_on_stderr(tiny_model_and_song):
    root = tiny_model_and_song
    done = _tfmusic("separate", "song.wav", "--model", "umx_bass.keras", "--out", "out", "--quiet", cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (root / "out" / "song" / "bass.wav").is_file()


def test_json_log_lines_parse(tiny_model_and_song):
    root = tiny_model_and_song
    done = _tfmusic("--log-format", "json", "--log-level", "info", "separate", "missing.wav", "--model",
                    "umx_bass.keras", "--quiet", cwd=root)
    assert done.returncode == 2  # a user error: printed as one line, not a log record
    lines = done.stderr.splitlines()
    assert lines and "missing.wav" in lines[-1]
    # an error logged through `logging` (and a warning from Python's warnings module) are JSON lines
    code = ("import logging, warnings, sys\n"
            "from tfmusic import logs\n"
            "logs.configure('info', 'json')\n"
            "logging.getLogger('tfmusic.x').info('hello %s', 'world')\n"
            "warnings.warn('careful')\n"
            "try:\n    1/0\nexcept ZeroDivisionError:\n    logging.getLogger('tfmusic.y').exception('boom')\n"
            "import tensorflow\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_user_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]  # every line parses, TF import included
    assert records[0] == {**records[0], "level": "INFO", "logger": "tfmusic.x", "message": "hello world"}
    assert records[1]["logger"] == "py.warnings" and "careful" in records[1]["message"]
    assert records[2]["level"] == "ERROR" and "ZeroDivisionError" in records[2]["exception"]
    assert len(records) == 3


def test_version_and_log_level_flags(capsys):
    from tfmusic import __version__
    from tfmusic.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"tfmusic {__version__}"
    with pytest.raises(SystemExit):
        main(["--log-level", "loud", "separate"])
    assert "--log-level" in capsys.readouterr().err


def test_native_noise_patterns():
    assert is_native_noise("E0000 00:00:1.1  52 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error")
    assert is_native_noise("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert is_native_noise("I0000 00:00:1 4303 port.cc:153] oneDNN custom operations are on. You may see")
    assert not is_native_noise("E0000 00:00:1 1 op_kernel.cc:1] OP_REQUIRES failed: out of memory")
