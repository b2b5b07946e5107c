"""Quiet, scriptable logging for the ``tfmusic`` command: levels, JSON lines, no native noise.

Why this exists: TensorFlow 2.21 writes C++ log lines to stderr before Python can filter them
(absl's "before InitializeLog" banner, the oneDNN notice, ``cudart_stub``/``cpu_feature_guard``
lines at import, and ``E0000 ... cuda_platform.cc] failed call to cuInit`` when the CUDA platform
first initialises on a machine without a GPU). ``TF_CPP_MIN_LOG_LEVEL`` does not hide the ones
printed before absl is initialised, so :func:`configure` also installs an import hook that runs
``import tensorflow`` (and the first device query, which triggers ``cuInit``) with file
descriptor 2 captured; lines that are known noise are dropped, anything else is passed on as a
WARNING of the ``tensorflow.native`` logger. At ``--log-level debug`` nothing is captured.
Everything here runs before TensorFlow is imported (the CLI imports it lazily in handlers).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import logging
import os
import re
import sys
import tempfile
import time
from typing import Iterator

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

# TF_CPP_MIN_LOG_LEVEL per --log-level (0 all, 1 no INFO, 2 no WARNING, 3 no ERROR). At the
# default level native ERROR lines go too: on a normal run they are notes such as "oneDNN supports
# DT_STRING only on ...", and real failures reach Python as exceptions with the same text.
_TF_CPP_LEVEL = {"debug": "0", "info": "1", "warning": "3", "error": "3"}

# Native lines that carry no information for a user of a CPU or GPU machine.
NATIVE_NOISE = tuple(re.compile(p) for p in (
    r"All log messages before absl::InitializeLog\(\) is called",
    r"oneDNN custom operations are on",
    r"cudart_stub\.cc",
    r"cpu_feature_guard\.cc",
    r"^To enable the following instructions:",
    r"rebuild TensorFlow with the appropriate compiler flags",
    r"failed call to cuInit",
    r"Could not find cuda drivers",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning",
    r"^\s*$",
))

# Python-side messages from third-party libraries that are noise for tfmusic users.
PYTHON_NOISE = ("apitools not found",)


def is_native_noise(line: str) -> bool:
    """True for a native stderr line that :data:`NATIVE_NOISE` drops."""
    return any(p.search(line) for p in NATIVE_NOISE)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``time``, ``level``, ``logger``, ``message``[, ``exception``])."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (test runners swap it per test)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _DropPythonNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in PYTHON_NOISE)


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[None]:
    """Capture file descriptor 2 (C++ and Python alike); re-log what is not known noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters, some test runners)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            native = logging.getLogger("tensorflow.native")
            for line in text.splitlines():
                if not is_native_noise(line):
                    native.warning("%s", line)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the first ``import tensorflow`` and first device query inside :func:`captured_native_stderr`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module) -> None:
            with captured_native_stderr():
                original(module)
                # cuInit happens when the platforms are first listed, not at import.
                with contextlib.suppress(Exception):
                    module.config.list_physical_devices()

        spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow_import() -> None:
    """Hide TensorFlow's import-time native noise (no-op when TensorFlow is already imported)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowImport())


def configure(level: str = "warning", fmt: str = "text", *, override_env: bool = False) -> None:
    """Set up logging for one CLI run; call before anything imports TensorFlow.

    ``override_env``: the user chose the level explicitly, so it wins over an inherited
    ``TF_CPP_MIN_LOG_LEVEL``; otherwise an existing value is kept.
    """
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {LEVELS}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    # JSON mode promises JSON lines only: native lines (not JSON) are shown at debug level alone.
    cpp_level = "3" if fmt == "json" and level != "debug" else _TF_CPP_LEVEL[level]
    if override_env:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = cpp_level
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", cpp_level)
    if level != "debug":
        quiet_tensorflow_import()
    handler = _StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_DropPythonNoise())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_tfmusic", False):
            root.removeHandler(old)
    handler._tfmusic = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.captureWarnings(True)
    # absl and TensorFlow's Python loggers go through the root handler; absl's INFO lines
    # ("Sharding callback duration" at every checkpoint) are noise unless debugging.
    for name in ("absl", "tensorflow", "keras"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.NOTSET if level == "debug" or name != "absl" else logging.WARNING)
        logger.propagate = True


__all__ = ["configure", "quiet_tensorflow_import", "captured_native_stderr", "is_native_noise",
           "JsonFormatter", "LEVELS", "FORMATS"]
