"""Client faults: the server is SIGKILLed mid-song and restarted, or never comes back.

The client (``ServingClient`` with a ``deadline``) must wait for the restarted server and return
exactly what an undisturbed run returns; past its deadline it must fail with a clear error, and
``tfmusic separate --server`` must then exit 2 and leave no stem files behind.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow_serving")
from tests.test_export_saved_model import export_tiny_separator  # noqa: E402
from tests._reliability_worker import differing, fault_log  # noqa: E402
from tfmusic.serving.client import ServingClient, ServingError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tfmusic serve`` on a fixed loopback port, so a restart answers at the same address."""

    def __init__(self, repo, port, ready):
        self.repo, self.port, self.ready, self.proc = repo, port, ready, None

    def start(self):
        self.ready.unlink(missing_ok=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "tfmusic", "serve", "--models", str(self.repo), "--port",
                                      str(self.port), "--poll-seconds", "0", "--ready-file", str(self.ready)],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def wait_ready(self, timeout=900):  # a loaded 2-core machine can take minutes to import TF
        deadline = time.monotonic() + timeout
        while not self.ready.is_file():
            assert self.proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture()
def server(tmp_path):
    repo = tmp_path / "repo"
    export_tiny_separator(repo)
    srv = Server(repo, _free_port(), tmp_path / "ready").start()
    srv.wait_ready()
    yield srv
    if srv.proc.poll() is None:
        srv.kill()


def _song(seconds=1.5):
    return (0.2 * np.random.default_rng(3).standard_normal((2, int(44100 * seconds)))).astype(np.float32)


def _kill_on_call(client, server, n, restart):
    """Wrap ``client.predict``: the n-th call first SIGKILLs the server (and starts a new one)."""
    calls = {"n": 0}
    predict = client.predict

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            server.kill()
            if restart:
                server.start()
        return predict(*args, **kwargs)

    client.predict = wrapped
    return calls


def test_restart_mid_song_is_retried_and_the_output_is_identical(server):
    address = f"127.0.0.1:{server.port}"
    song = _song()
    fault = "server SIGKILL + restart mid-song"
    with fault_log("serving client, output identical", [fault]) as record:
        with ServingClient(address, "separator", timeout=30, deadline=900) as client:  # slow restarts on busy boxes
            want = client.separate(song, chunk_samples=16384, overlap_samples=4096)
            calls = _kill_on_call(client, server, n=3, restart=True)
            got = client.separate(song, chunk_samples=16384, overlap_samples=4096)
        if calls["n"] > 3:  # the server died after two chunks of this song had been answered, and the song finished
            record.survived(fault)
        record.lost = differing(want, got)  # stems missing or not bit-identical to the undisturbed run's
        assert calls["n"] > 3
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_past_the_deadline_a_clear_error_and_no_stem_files(server, tmp_path, monkeypatch, capsys):
    from tfmusic.audio.io import write_audio
    from tfmusic.cli.main import main

    address = f"127.0.0.1:{server.port}"
    never_back, mid_song = "server SIGKILL, never back (deadline)", "server dies mid-song in tfmusic separate"
    with fault_log("serving client, clear error, no partial stems", [never_back, mid_song]) as record:
        wrong = 0  # answers a dead server cannot have given, and stem files left half-written
        with ServingClient(address, "separator", timeout=5, deadline=3) as client:
            client.metadata()
            server.kill()
            began = time.monotonic()
            try:
                client.predict({"waveform": _song(0.5)[None]})
                wrong += 1
                error = None
            except ServingError as caught:
                error, took = caught, time.monotonic() - began
        if error is not None and error.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and took < 10:
            record.survived(never_back)  # a clear error within the deadline, no hang
        assert error is not None and re.search(r"gave up after \d+ attempts .* of a 3 s deadline", str(error))
        assert error.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and took < 10

        server.start()
        server.wait_ready()
        song = tmp_path / "song.wav"
        write_audio(song, _song(3.0))
        real = ServingClient.predict
        calls = {"n": 0}

        def dying(self, *args, **kwargs):  # the server dies for good after the first chunks were written
            calls["n"] += 1
            if calls["n"] == 4:
                server.kill()
            return real(self, *args, **kwargs)

        monkeypatch.setattr(ServingClient, "predict", dying)
        out = tmp_path / "out"
        code = main(["separate", str(song), "--server", address, "--server-timeout", "3", "--chunk-seconds", "0.5",
                     "--overlap-seconds", "0.1", "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        left = [p for p in out.rglob("*") if p.is_file()]
        record.lost = wrong + len(left)
        if code == 2 and calls["n"] >= 4 and "gave up after" in err and "Traceback" not in err and not left:
            record.survived(mid_song)
        assert code == 2 and calls["n"] >= 4
        assert "gave up after" in err and "Traceback" not in err
        assert left == []
