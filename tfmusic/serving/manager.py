"""Model manager: which versions of which models are loaded, kept in line with the policy by polling.

Follows TF Serving's ``ServerCore`` + ``AspiredVersionsManager`` with the default
availability-preserving policy: a new version is loaded (and warmed up) before an old one is
unloaded, so a model never has zero servable versions during a transition, and a new version that
fails to load leaves the old one serving. Version states are the ``ModelVersionStatus`` states
(START, LOADING, AVAILABLE, END) that GetModelStatus reports. ``ModelSpec`` resolution gives TF
Serving's codes (``model_servers/server_core.cc``): no name or an unknown label -> INVALID_ARGUMENT,
an unknown model or version -> NOT_FOUND.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tfmusic.serving.config import ModelConfig
from tfmusic.serving.errors import ServingError
from tfmusic.serving.repository import list_versions, read_signature_defs, read_warmup

log = logging.getLogger(__name__)


@dataclass
class Signature:
    """One callable signature of a loaded version: inputs as ``tf.TensorSpec`` by name, output names."""

    fn: Callable
    inputs: dict[str, Any]
    outputs: list[str]


@dataclass
class LoadedVersion:
    name: str
    version: int
    path: Path
    handle: Any
    signatures: dict[str, Signature]
    signature_defs: dict[str, Any]


@dataclass
class VersionState:
    state: str  # START, LOADING, AVAILABLE, END
    error_code: str = "OK"
    error_message: str = ""


def load_version(name: str, path: Path) -> LoadedVersion:
    """``tf.saved_model.load`` one version folder and index its signatures."""
    import tensorflow as tf

    handle = tf.saved_model.load(str(path))
    sigs = {key: Signature(fn, dict(fn.structured_input_signature[1]), sorted(fn.structured_outputs))
            for key, fn in handle.signatures.items()}
    return LoadedVersion(name, int(path.name), path, handle, sigs, read_signature_defs(path))


WarmupFn = Callable[[LoadedVersion, Any], None]  # (version, PredictRequest) -> None, raises on failure


class ModelManager:
    """Loads/unloads versions per policy; resolves a ``ModelSpec`` to the version that serves it."""

    def __init__(self, configs: list[ModelConfig], config_loader: Callable[[], list[ModelConfig]] | None = None,
                 warmup: WarmupFn | None = None) -> None:
        self._configs = {c.name: c for c in configs}
        self._config_loader = config_loader
        self._warmup = warmup
        self._loaded: dict[str, dict[int, LoadedVersion]] = defaultdict(dict)
        self._states: dict[str, dict[int, VersionState]] = defaultdict(dict)
        self._failed: set[tuple[str, int]] = set()
        self._lock = threading.RLock()

    @property
    def model_names(self) -> list[str]:
        return sorted(self._configs)

    def available(self) -> dict[str, list[int]]:
        """Loaded versions by model (what the server says at start)."""
        with self._lock:
            return {name: sorted(self._loaded[name]) for name in self.model_names}

    def reload_config(self) -> None:
        """Re-read the models config; models no longer listed are unloaded."""
        if self._config_loader is None:
            return
        configs = self._config_loader()
        with self._lock:
            self._configs = {c.name: c for c in configs}
            for name in list(self._loaded):
                if name not in self._configs:
                    for v in list(self._loaded[name]):
                        self._unload(name, v)

    def poll(self) -> None:
        """One pass: load wanted versions first, then unload unwanted ones if that keeps the model available."""
        for cfg in list(self._configs.values()):
            on_disk = list_versions(cfg.base_path)
            wanted = set(cfg.policy.select(on_disk))
            if cfg.policy.kind == "specific":
                for v in cfg.policy.versions:
                    if v not in wanted and v not in self._states[cfg.name]:
                        self._states[cfg.name][v] = VersionState("START", "NOT_FOUND",
                                                                 f"version {v} not found under {cfg.base_path}")
            for v in sorted(wanted - set(self._loaded[cfg.name])):
                if (cfg.name, v) not in self._failed:  # a broken version is not retried on every poll
                    self._load(cfg, v)
            loaded = set(self._loaded[cfg.name])
            if loaded & wanted or not set(on_disk) & wanted:
                for v in sorted(loaded - wanted):
                    self._unload(cfg.name, v)
            for label, v in cfg.labels.items():
                if v not in self._loaded[cfg.name]:
                    log.warning("model %s: label %r points at version %d, which is not loaded", cfg.name, label, v)

    def _load(self, cfg: ModelConfig, version: int) -> None:
        path = cfg.base_path / str(version)
        self._states[cfg.name][version] = VersionState("LOADING")
        try:
            loaded = load_version(cfg.name, path)
            if self._warmup is not None:
                for request in read_warmup(path):
                    self._warmup(loaded, request)
        except Exception as err:  # noqa: BLE001 - a bad version must not take the server down
            code = err.code if isinstance(err, ServingError) else "UNKNOWN"
            message = err.message if isinstance(err, ServingError) else str(err)
            log.error("model %s version %d at %s failed to load: %s", cfg.name, version, path, message)
            self._states[cfg.name][version] = VersionState("END", code, f"{path}: failed to load: {message}")
            self._failed.add((cfg.name, version))
            return
        with self._lock:
            self._loaded[cfg.name][version] = loaded
            self._states[cfg.name][version] = VersionState("AVAILABLE")
        log.info("model %s version %d AVAILABLE (%s)", cfg.name, version, path)

    def _unload(self, name: str, version: int) -> None:
        with self._lock:
            self._loaded[name].pop(version, None)
            self._states[name][version] = VersionState("END")
        log.info("model %s version %d unloaded", name, version)

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        """The version a ``ModelSpec`` asks for (``ServableRequestFromModelSpec`` + ``GetServableHandle``)."""
        if not name:
            raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
        with self._lock:
            if label:
                cfg = self._configs.get(name)
                if cfg is None or label not in cfg.labels:
                    raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
                version = cfg.labels[label]
            loaded = self._loaded.get(name, {})
            if version is not None:
                if version not in loaded:
                    raise ServingError("NOT_FOUND", f"Servable not found for request: Specific({name}, {version})")
                return loaded[version]
            if not loaded:
                raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
            return loaded[max(loaded)]

    def statuses(self, name: str, version: int | None = None) -> list[tuple[int, VersionState]]:
        """``(version, state)`` pairs as GetModelStatus reports them (``get_model_status_impl.cc``)."""
        with self._lock:
            states = self._states.get(name, {})
            if version is not None:
                if version not in states:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
                return [(version, states[version])]
            if not states:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
            return [(v, states[v]) for v in sorted(states)]
