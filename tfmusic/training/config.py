"""Training configuration: typed dataclasses, YAML/JSON files, dotted overrides.

A run is described by one nested dictionary. Files (YAML or JSON) and command-line flags are
merged into it in that order, validated against the dataclasses below (unknown keys and wrong
types are errors that name the file and the key), and the fully resolved result is written to
``<run_dir>/config.json`` so a run can always be reproduced or resumed from its own directory.

Scheduling units: the trainer counts optimizer *steps*. ``eval_every`` steps make one
"evaluation round", the unit in which plateau and early-stopping patience are counted; it plays
the role of the reference implementations' epoch (spec A.6: plateau factor 0.3, patience 80,
cooldown 10, early-stopping patience 140).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

MIXED_PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16", "auto")  # auto: training/precision.py
STRATEGY_NAMES = ("default", "mirrored", "multiworker")


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the source and the key."""


@dataclasses.dataclass
class PlateauConfig:
    """Reduce-on-plateau for every optimizer's learning rate (PyTorch ReduceLROnPlateau rules).

    After more than ``patience`` evaluation rounds without improvement of the monitored metric
    the learning rate is multiplied by ``factor`` (never below ``min_lr``); then ``cooldown``
    rounds pass during which bad rounds are not counted. ``patience: null`` disables it.
    """

    factor: float = 0.3
    patience: int | None = 80
    cooldown: int = 10
    min_lr: float = 0.0
    min_delta: float = 0.0


@dataclasses.dataclass
class EarlyStoppingConfig:
    """Stop after ``patience`` evaluation rounds in a row without improvement (``null``: never)."""

    patience: int | None = 140
    min_delta: float = 0.0


KEEP_MODEL = ("best", "final")


@dataclasses.dataclass
class TrainerConfig:
    """Everything the task-independent trainer needs (see ``tfmusic.training.trainer``)."""

    steps: int = 100_000
    batch_size: int = 16  # global batch size, split evenly over replicas
    eval_every: int = 250
    eval_steps: int | None = 20  # batches per evaluation; null = the whole evaluation set
    log_every: int = 10
    checkpoint_every: int | None = None  # null = every evaluation
    keep_checkpoints: int = 3
    monitor: str = "loss"  # evaluation metric to minimise for plateau / early stopping / best model
    keep_model: str = "best"  # model.keras holds the "best" (lowest monitored metric) or the "final" weights
    summaries: bool = True  # audio / image summaries at each evaluation (task-defined)
    histograms: bool = False  # weight + activation histograms every eval_every steps (slow)
    grad_norm: bool = True  # TensorBoard grad_norm/<optimizer> (one extra all-reduce with replicas)
    profile_steps: list[int] | None = None  # [start, end]: tf.profiler capture of these steps
    plateau: PlateauConfig = dataclasses.field(default_factory=PlateauConfig)
    early_stopping: EarlyStoppingConfig = dataclasses.field(default_factory=EarlyStoppingConfig)
    mixed_precision: str = "float32"
    jit_compile: bool = False  # XLA-compile each replica's step (forward, backward, optimizer update)
    steps_per_execution: int = 1  # optimizer steps per tf.function call (fewer host round trips)
    recompute: bool = True  # recompute the task's recompute_layers() in the backward pass (memory; same gradients)
    fused_batchnorm: bool = True  # training-mode BatchNorm by TF's fused kernel (speed; Keras' formula)
    fused_lstm: bool = True  # training-mode TorchLSTM recurrence in one XLA loop, analytic backward (speed; same maths)
    fused_adam: bool = True  # Adam/AdamW updates by TF's one-pass kernel (speed; Keras' formula)
    strategy: str = "default"
    devices: list[str] | int | None = None
    seed: int = 42
    deterministic: bool = False  # deterministic input pipeline + TF op determinism

    def validate(self, source: str = "config") -> None:
        positive = ("steps", "batch_size", "eval_every", "log_every", "keep_checkpoints", "steps_per_execution")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{source}: trainer.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_steps", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{source}: trainer.{name} must be >= 1 or null, got {value}")
        if self.profile_steps is not None and (
                len(self.profile_steps) != 2 or not 1 <= self.profile_steps[0] <= self.profile_steps[1]):
            raise ConfigError(
                f"{source}: trainer.profile_steps must be [start, end] with 1 <= start <= end, "
                f"got {self.profile_steps}"
            )
        if self.mixed_precision not in MIXED_PRECISION_POLICIES:
            raise ConfigError(
                f"{source}: trainer.mixed_precision must be one of {MIXED_PRECISION_POLICIES}, "
                f"got {self.mixed_precision!r}"
            )
        if self.strategy not in STRATEGY_NAMES:
            raise ConfigError(
                f"{source}: trainer.strategy must be one of {STRATEGY_NAMES}, got {self.strategy!r}"
            )
        if self.keep_model not in KEEP_MODEL:
            raise ConfigError(f"{source}: trainer.keep_model must be one of {KEEP_MODEL}, got {self.keep_model!r}")
        if not 0.0 < self.plateau.factor < 1.0:
            raise ConfigError(f"{source}: trainer.plateau.factor must be in (0, 1), got {self.plateau.factor}")
        for name, value in (("plateau.patience", self.plateau.patience),
                            ("early_stopping.patience", self.early_stopping.patience)):
            if value is not None and value < 0:
                raise ConfigError(f"{source}: trainer.{name} must be >= 0 or null, got {value}")
        if self.plateau.cooldown < 0:
            raise ConfigError(f"{source}: trainer.plateau.cooldown must be >= 0, got {self.plateau.cooldown}")


T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _from_mapping(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return copy.deepcopy(dict(value))
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported annotation {tp!r}")


def _from_mapping(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def from_dict(cls: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Build dataclass ``cls`` from a nested mapping; missing keys take their defaults."""
    try:
        obj = _from_mapping(cls, data, "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {str(err).lstrip(': ')}") from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(source)
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """The JSON-serialisable nested dictionary of a config dataclass."""
    return dataclasses.asdict(obj)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON config file into a dictionary."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown config format {suffix!r} (use .yaml, .yml or .json)")
    except ConfigError:
        raise
    except Exception as err:  # yaml.YAMLError, json.JSONDecodeError
        raise ConfigError(f"{path}: cannot parse config: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config file must be a mapping")
    return data


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in recursively (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating mappings on the way."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``key.path=value`` with the value read as YAML (``3``, ``1e-4``, ``null``, ``[a, b]``)."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. trainer.plateau.patience=5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: cannot parse value: {err}") from None
    return key, value


def save_json(data: Mapping[str, Any], path: str | Path) -> None:
    """Write ``data`` as indented JSON atomically (a crash never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def command_line_layers(config_file: str | None, flags: dict, assignments: list[str]) -> list[tuple[str, dict]]:
    """The layers a command line adds over the defaults, in order: ``--config`` file, explicit
    flags, then ``--set KEY=VALUE`` assignments (each named by its source for error messages)."""
    layers: list[tuple[str, dict]] = []
    if config_file:
        layers.append((config_file, load_config_file(config_file)))
    layers.append(("command-line flags", flags))
    sets: dict = {}
    for text in assignments:
        key, value = parse_assignment(text)
        set_dotted(sets, key, value)
    if sets:
        layers.append(("--set", sets))
    return layers

