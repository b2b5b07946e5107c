"""TF Serving's three config files, read with the same proto schemas TF Serving uses.

* ``--model_config_file``: ``ModelServerConfig`` (``tensorflow_serving.config``, shipped in
  ``tensorflow-serving-api``): model names, base paths, version policies, version labels.
* ``--batching_parameters_file``: ``BatchingParameters`` and ``--monitoring_config_file``:
  ``MonitoringConfig``. Their protos are not in the pip package, so the two messages are declared
  here field for field (numbers and types as in ``session_bundle_config.proto`` and
  ``monitoring_config.proto``) and parsed with protobuf's own text format: a file TF Serving
  accepts parses here, and a misspelt field fails here as it does there.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class VersionPolicy:
    """Which versions to serve: ``latest`` (the ``num_versions`` highest), ``specific`` or ``all``."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        if self.kind == "all":
            return list(available)
        if self.kind == "specific":
            return [v for v in available if v in self.versions]
        return sorted(available)[-self.num_versions:] if available else []


@dataclass
class ModelConfig:
    name: str
    base_path: Path
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: dict[str, int] = field(default_factory=dict)


def inside_repository(repo: Path, name: str, source: str) -> Path:
    """``repo/name``, refusing names and symlinks that lead outside the repository.

    Model names and base paths come from configs and requests; with ``--models REPO`` the server
    must only ever load what lies under REPO (``..``, absolute paths and symlinks out are refused).
    """
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"model path {source!r}: not a model folder name inside the repository {repo}")
    path = repo / name
    root = repo.resolve()
    if path.exists() and not path.resolve().is_relative_to(root):
        raise ValueError(f"model path {source!r}: {path} resolves to {path.resolve()}, outside the repository {root}")
    return path


def resolve_base_path(base_path: str, repo: Path | None, config_path: Path | None) -> Path:
    """Where a config's ``base_path`` lives on this machine.

    With ``--models REPO`` the repository wins: ``/models/separator`` (the container path) maps to
    ``REPO/separator``. Without it, relative paths are taken from the config file's folder.
    """
    if repo is not None:
        return inside_repository(repo, Path(base_path).name, base_path)
    path = Path(base_path)
    if not path.is_absolute() and config_path is not None:
        path = config_path.parent / path
    return path


def parse_models_config(path: str | os.PathLike, repo: str | os.PathLike | None = None) -> list[ModelConfig]:
    """Read a TF Serving ``ModelServerConfig`` text proto (``model_config_list``)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    proto = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), proto)
    except text_format.ParseError as err:
        raise ValueError(f"{path}: not a ModelServerConfig text proto: {err}") from err
    if not proto.HasField("model_config_list"):
        raise ValueError(f"{path}: needs a model_config_list {{ config {{ ... }} }} block")
    out = []
    for cfg in proto.model_config_list.config:
        if not cfg.name or not cfg.base_path:
            raise ValueError(f"{path}: every config needs name and base_path (got name={cfg.name!r})")
        if cfg.model_platform and cfg.model_platform != "tensorflow":
            raise ValueError(f"{path}: model {cfg.name!r} platform {cfg.model_platform!r}; only 'tensorflow'")
        which = cfg.model_version_policy.WhichOneof("policy_choice")
        if which == "specific":
            policy = VersionPolicy("specific", versions=tuple(int(v) for v in cfg.model_version_policy.specific.versions))
            if not policy.versions:
                raise ValueError(f"{path}: model {cfg.name!r} has an empty specific {{ }} policy")
        elif which == "all":
            policy = VersionPolicy("all")
        else:
            n = int(cfg.model_version_policy.latest.num_versions) if which == "latest" else 0
            policy = VersionPolicy("latest", num_versions=n or 1)
        base = resolve_base_path(cfg.base_path, Path(repo) if repo else None, path)
        out.append(ModelConfig(cfg.name, base, policy, {k: int(v) for k, v in cfg.version_labels.items()}))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate model names in {names}")
    return out


def repo_models(repo: str | os.PathLike) -> list[ModelConfig]:
    """One ``latest`` config per model folder of a repository (folders holding numeric versions)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise ValueError(f"{repo}: model repository folder does not exist")
    return [ModelConfig(p.name, inside_repository(repo, p.name, p.name)) for p in sorted(repo.iterdir())
            if p.is_dir() and not p.name.startswith(".") and any(c.name.isdigit() for c in p.iterdir())]


# ---------------------------------------------------------------------------------------------
# BatchingParameters and MonitoringConfig
# ---------------------------------------------------------------------------------------------

_BATCHING_FIELDS = [  # (name, number, type or wrapper message, repeated)
    ("max_batch_size", 1, ".google.protobuf.Int64Value", False),
    ("batch_timeout_micros", 2, ".google.protobuf.Int64Value", False),
    ("max_enqueued_batches", 3, ".google.protobuf.Int64Value", False),
    ("num_batch_threads", 4, ".google.protobuf.Int64Value", False),
    ("thread_pool_name", 5, ".google.protobuf.StringValue", False),
    ("allowed_batch_sizes", 6, "int64", True),
    ("pad_variable_length_inputs", 7, "bool", False),
    ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue", False),
    ("max_execution_batch_size", 9, ".google.protobuf.Int64Value", False),
]


@functools.cache
def _messages() -> dict:
    """``BatchingParameters``, ``MonitoringConfig`` message classes built from their field lists."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    F = descriptor_pb2.FieldDescriptorProto
    scalar = {"int64": F.TYPE_INT64, "bool": F.TYPE_BOOL, "string": F.TYPE_STRING}
    file = descriptor_pb2.FileDescriptorProto(name="tfmusic_serving_config.proto", package="tensorflow.serving",
                                              syntax="proto3", dependency=["google/protobuf/wrappers.proto"])

    def add(message, fields) -> None:
        for name, number, kind, repeated in fields:
            f = message.field.add(name=name, number=number,
                                  label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if kind in scalar:
                f.type = scalar[kind]
            else:
                f.type, f.type_name = F.TYPE_MESSAGE, kind

    add(file.message_type.add(name="BatchingParameters"), _BATCHING_FIELDS)
    add(file.message_type.add(name="PrometheusConfig"), [("enable", 1, "bool", False), ("path", 2, "string", False)])
    add(file.message_type.add(name="MonitoringConfig"),
        [("prometheus_config", 1, ".tensorflow.serving.PrometheusConfig", False)])
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(file.SerializeToString())
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{n}"))
            for n in ("BatchingParameters", "MonitoringConfig")}


def _parse_text(path: Path, message: str):
    from google.protobuf import text_format

    proto = _messages()[message]()
    try:
        text_format.Parse(path.read_text(), proto)
    except text_format.ParseError as err:
        raise ValueError(f"{path}: not a {message} text proto: {err}") from err
    return proto


@dataclass
class BatchingConfig:
    """TF Serving's ``BatchingParameters``; defaults are TF Serving's when a field is absent.

    ``max_batch_size`` bounds one request (``input_batch_size_limit``) and, without splitting, one
    batch; with ``enable_large_batch_splitting`` a batch executes at most ``max_execution_batch_size``
    examples and larger requests are split across batches.
    """

    max_batch_size: int = 1000  # SharedBatchScheduler QueueOptions default
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None

    @property
    def execution_batch_size(self) -> int:
        """Most examples one batch runs with."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return self.max_execution_batch_size
        return self.max_batch_size

    def validate(self, where: str = "batching parameters") -> "BatchingConfig":
        """The checks TF Serving makes when it wraps a session for batching (a model fails to load otherwise)."""
        if self.max_batch_size < 1 or self.num_batch_threads < 1:
            raise ValueError(f"{where}: max_batch_size and num_batch_threads must be >= 1")
        sizes = list(self.allowed_batch_sizes)
        if sizes:
            if any(b <= a for a, b in zip(sizes, sizes[1:])):
                raise ValueError(f"{where}: allowed_batch_sizes entries must be monotonically increasing")
            if sizes[-1] != self.execution_batch_size:
                raise ValueError(f"{where}: last entry in allowed_batch_sizes must match max_batch_size "
                                 f"(max_execution_batch_size with splitting); last entry was {sizes[-1]}, "
                                 f"expected {self.execution_batch_size}")
        return self


def parse_batching_config(path: str | os.PathLike) -> BatchingConfig:
    """Read a ``--batching_parameters_file`` (``max_batch_size { value: 8 }`` ...)."""
    path = Path(path)
    proto = _parse_text(path, "BatchingParameters")
    cfg = BatchingConfig()
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
                 "max_execution_batch_size"):
        if proto.HasField(name):
            setattr(cfg, name, int(getattr(proto, name).value))
    if proto.HasField("enable_large_batch_splitting"):
        cfg.enable_large_batch_splitting = bool(proto.enable_large_batch_splitting.value)
    cfg.allowed_batch_sizes = tuple(int(v) for v in proto.allowed_batch_sizes)
    cfg.pad_variable_length_inputs = bool(proto.pad_variable_length_inputs)
    return cfg.validate(str(path))


@dataclass
class MonitoringConfig:
    """Prometheus export: on or off, and the path on the REST port."""

    prometheus_enabled: bool = False
    prometheus_path: str = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath


def parse_monitoring_config(path: str | os.PathLike) -> MonitoringConfig:
    """Read a ``--monitoring_config_file`` (``prometheus_config { enable: true, path: "..." }``)."""
    path = Path(path)
    proto = _parse_text(path, "MonitoringConfig")
    cfg = MonitoringConfig(prometheus_enabled=bool(proto.prometheus_config.enable))
    if proto.prometheus_config.path:
        cfg.prometheus_path = proto.prometheus_config.path
    return cfg
