"""A Cloud Storage emulator on 127.0.0.1 for tests: no network, no real credentials.

``gcp-storage-emulator`` (PyPI) serves the JSON/XML storage API in-memory; ``STORAGE_EMULATOR_HOST``
points google-cloud-storage (and so Beam's ``gs://`` filesystem) at it. Beam asks
``google.auth.default()`` for credentials and retries for ~30 s per process when there are none;
a local token endpoint named by an ``external_account`` credentials file answers at once, so the
driver and every worker process get a dummy token over loopback (the emulator ignores it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BUCKET = "tfmusic-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _TokenHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        body = json.dumps({"access_token": "local-test-token", "expires_in": 3600, "token_type": "Bearer",
                           "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"storage emulator exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"storage emulator did not listen on 127.0.0.1:{port} within {timeout}s")


@contextmanager
def gcs_emulator(workdir: Path):
    """Start the emulator and token endpoint; set the env vars; yield ``gs://BUCKET``."""
    token_port, port = free_port(), free_port()
    token_server = ThreadingHTTPServer(("127.0.0.1", token_port), _TokenHandler)
    threading.Thread(target=token_server.serve_forever, daemon=True).start()
    creds = workdir / "local-test-credentials.json"
    subject = workdir / "local-subject-token"
    subject.write_text("local")
    creds.write_text(json.dumps({
        "type": "external_account", "audience": "//iam.googleapis.com/local-test",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"http://127.0.0.1:{token_port}/token", "credential_source": {"file": str(subject)}}))
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    log = open(workdir / "emulator.log", "wb")
    proc = subprocess.Popen([str(exe), "start", "-H", "127.0.0.1", "--port", str(port),
                             "--default-bucket", BUCKET, "-q", "-M"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=workdir)
    env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
           "GOOGLE_APPLICATION_CREDENTIALS": str(creds),
           "GOOGLE_CLOUD_PROJECT": "tfmusic-test", "NO_GCE_CHECK": "true"}
    saved = {k: os.environ.get(k) for k in env}
    try:
        _wait_for_port(port, proc)
        os.environ.update(env)
        yield f"gs://{BUCKET}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        token_server.shutdown()
        log.close()


def upload_tree(local: Path, remote: str) -> list[str]:
    """Copy every file under ``local`` to ``remote/<relative path>``; returns the remote paths."""
    from tfmusic import storage

    out = []
    for p in sorted(local.rglob("*")):
        if p.is_file():
            dst = storage.join(remote, p.relative_to(local).as_posix())
            storage.write_bytes(dst, p.read_bytes())
            out.append(dst)
    return out


def download_tree(remote: str) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every object under ``remote/``."""
    from tfmusic import storage

    prefix = remote.rstrip("/") + "/"
    return {p[len(prefix):]: storage.read_bytes(p) for p in storage.glob(prefix + "**")}


def local_tree(local: Path) -> dict[str, bytes]:
    return {p.relative_to(local).as_posix(): p.read_bytes() for p in sorted(local.rglob("*")) if p.is_file()}
