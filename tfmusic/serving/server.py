"""Embedded TF Serving-compatible server: the same gRPC (and REST) API over the same model repository.

Production serving is real TF Serving (see ``serving/README.md``). This server exists so that
development, tests and the demo run the very same client against the very same
``<repo>/<model>/<version>/`` layout and config files without that binary, and answer every
request as TF Serving would (the conformance table in ``serving/README.md`` lists each case with
the TF Serving source it comes from). The pieces: `config` (the three config files), `manager`
(versions, labels, polling), `batching`, `core` (request logic and codes), `grpc_api`,
`rest_api`, `metrics`. It binds 127.0.0.1 unless told otherwise and says where it listens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Iterator

from tfmusic.serving.config import (BatchingConfig, ModelConfig, MonitoringConfig, parse_batching_config,
                                    parse_models_config, parse_monitoring_config, repo_models)
from tfmusic.serving.core import ServingCore
from tfmusic.serving.manager import ModelManager

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 2**31 - 1  # TF Serving: builder.SetMaxMessageSize(INT32_MAX) (model_servers/server.cc)

__all__ = ["EmbeddedServer", "spawn_server", "BatchingConfig", "MonitoringConfig", "parse_batching_config",
           "parse_models_config", "parse_monitoring_config", "MAX_MESSAGE_BYTES"]


class EmbeddedServer:
    """gRPC (+ optional REST) server over a model repository; use as a context manager or start/stop."""

    def __init__(self, repo: str | os.PathLike | None = None, *, config: str | os.PathLike | None = None,
                 host: str = "127.0.0.1", port: int = 8500, rest_port: int | None = None,
                 batching: BatchingConfig | None = None, monitoring: MonitoringConfig | None = None,
                 poll_seconds: float = 2.0, warmup: bool = True, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 max_workers: int = 16) -> None:
        if repo is None and config is None:
            raise ValueError("give a model repository (--models) or a models.config (--config)")
        self.repo = Path(repo) if repo is not None else None
        self.config = Path(config) if config is not None else None
        if self.config is not None and not self.config.is_file():
            raise FileNotFoundError(2, "models config not found", str(self.config))
        self.host, self.port, self.rest_port = host, port, rest_port
        self.poll_seconds = poll_seconds
        self.max_message_bytes = int(max_message_bytes)
        self.max_workers = max_workers
        self.monitoring = monitoring
        self._config_mtime: float | None = None
        # warmup requests run through the core, batching included, as TF Serving replays them
        replay = (lambda version, request: self.core.run_warmup(version, request)) if warmup else None
        self.manager = ModelManager(self._read_configs(), self._read_configs if self.config else None, replay)
        self.core = ServingCore(self.manager, batching)
        self._grpc = None
        self._http = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _read_configs(self) -> list[ModelConfig]:
        if self.config is not None:
            self._config_mtime = self.config.stat().st_mtime
            return parse_models_config(self.config, self.repo)
        return repo_models(self.repo)

    @staticmethod
    def _join(host: str, port: int) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC API."""
        return self._join(self.host, self.port)

    @property
    def rest_address(self) -> str | None:
        """``host:port`` of the REST API, if served."""
        return self._join(self.host, self.rest_port) if self.rest_port is not None else None

    def start(self) -> "EmbeddedServer":
        import grpc

        from tfmusic.serving.grpc_api import add_services

        self.manager.poll()
        options = [("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.so_reuseport", 0)]
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers), options=options)
        add_services(self._grpc, self.core, self.max_message_bytes)
        bound = self._grpc.add_insecure_port(self.address)
        if not bound:
            raise OSError(f"cannot bind gRPC to {self.address} (port in use?)")
        self.port = bound
        self._grpc.start()
        if self.rest_port is not None:
            from http.server import ThreadingHTTPServer

            from tfmusic.serving.rest_api import make_handler

            handler = make_handler(self.core, self.monitoring, self.max_message_bytes)
            self._http = ThreadingHTTPServer((self.host, self.rest_port), handler)
            self._http.daemon_threads = True
            self.rest_port = self._http.server_address[1]
            self._spawn(self._http.serve_forever, "tfmusic-rest")
        if self.poll_seconds and self.poll_seconds > 0:
            self._spawn(self._poll_loop, "tfmusic-poll")
        rest = f", REST on {self.rest_address}" if self.rest_port is not None else ""
        log.info("serving %s: gRPC on %s%s", self.manager.available(), self.address, rest)
        return self

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                if self.config is not None and self.config.stat().st_mtime != self._config_mtime:
                    log.info("%s changed; reloading model config", self.config)
                    self.manager.reload_config()
                self.manager.poll()
            except Exception as err:  # noqa: BLE001 - keep serving what is loaded
                log.error("model poll failed: %s", err)

    def stop(self, grace: float = 1.0) -> None:
        self._stop.set()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self.core.close()

    def wait(self) -> None:
        """Block until stopped (Ctrl-C / SIGTERM in the CLI)."""
        self._grpc.wait_for_termination()

    def __enter__(self) -> "EmbeddedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def spawn_server(repo: str | os.PathLike | None = None, *, config: str | os.PathLike | None = None,
                 extra_args: list[str] | None = None, startup_timeout: float = 180.0
                 ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``tfmusic serve`` in a child process on a free port; yields ``(address, process)``.

    The child is terminated on exit. Used by benchmarks (to measure the server's own memory) and by
    callers that want the server out of their process.
    """
    with tempfile.TemporaryDirectory(prefix="tfmusic-serve-") as tmp:
        ready = Path(tmp) / "address"
        cmd = [sys.executable, "-m", "tfmusic", "serve", "--port", "0", "--ready-file", str(ready)]
        if repo is not None:
            cmd += ["--models", str(repo)]
        if config is not None:
            cmd += ["--config", str(config)]
        cmd += list(extra_args or [])
        proc = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + startup_timeout
            while not (ready.is_file() and ready.read_text().strip()):
                if proc.poll() is not None:
                    raise RuntimeError(f"`{' '.join(cmd)}` exited with status {proc.returncode} before serving")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not come up within {startup_timeout:.0f}s")
                time.sleep(0.1)
            yield ready.read_text().strip(), proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
