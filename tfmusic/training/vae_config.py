"""The layered run config of ``tfmusic vae train``: the same rules as separation training.

One nested dictionary, merged in this order (later wins): the defaults of the model and objective,
``--config FILE`` (YAML or JSON), the command-line flags, ``--set KEY=VALUE``; every layer is
checked against :class:`VAERunConfig` by ``tfmusic.training.config`` (unknown keys and wrong types
name their source). Defaults follow the reference spec (B.2, C.8): batch 512 / 256 / 128 for
dMelodies / measures / images (1024 for the dSprites Factor-VAE), 100 / 30 / 100 epochs, no plateau
and no early stopping (the references train for a fixed budget), seed 0.

Three values depend on the data, so they stay null until it is open (:func:`finalize_config`):
``vae.steps_per_epoch`` (ceil(train examples / batch size)), ``trainer.steps`` (``epochs`` x steps
per epoch) and ``trainer.eval_every`` (once per epoch, at most ``trainer.steps``). The finalized
config is what ``<run>/config.json`` holds, so it can be given back with ``--config``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from tfmusic.models.vae.init import INIT_SCHEMES
from tfmusic.models.vae.presets import OBJECTIVES, family_of
from tfmusic.training.config import ConfigError, TrainerConfig, deep_merge, from_dict, to_dict

DEFAULT_BATCH = {"dmelodies": 512, "measure": 256, "image": 128}  # C.8, B.2
DEFAULT_EPOCHS = {"dmelodies": 100, "measure": 30, "image": 100}


@dataclasses.dataclass
class VAEConfig:
    """The task's part of a run config (``config.json["vae"]``)."""

    model: str
    objective: str
    z_dim: int | None = None
    hidden: int | None = None  # RNN width override (tests / tiny demos)
    learning_rate: float = 1e-4
    beta: float | None = None
    capacity: float | None = None
    gamma: float | None = None
    delta: float | None = None
    warmup_epochs: int | None = None
    ramp_iterations: float = 1e5
    steps_per_epoch: int | None = None  # None: ceil(train examples / batch size)
    teacher_forcing: float = 0.5
    reg_dims: list[int] | None = None
    reg_columns: list[int] | None = None
    disc_learning_rate: float = 1e-4
    # the references' Xavier-normal weights and zero biases (models/vae/init.py); "keras" keeps Keras' defaults.
    # Side by side (bench/experiments/experiment_vae_init.md) xavier was marginally ahead after 500 steps.
    init: str = "xavier"
    seed: int = 0

    def validate(self) -> None:
        family_of(self.model)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; expected one of {OBJECTIVES}")
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"unknown init {self.init!r}; expected one of {INIT_SCHEMES}")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be a probability, got {self.teacher_forcing}")
        if (self.reg_dims is None) != (self.reg_columns is None) and self.reg_columns is not None:
            raise ValueError("--reg-columns needs --reg-dims")


@dataclasses.dataclass
class VAETrainerConfig(TrainerConfig):
    """The trainer section of a VAE run: ``steps`` and ``eval_every`` may stay null (data-dependent)."""

    steps: int | None = None  # null: epochs x steps per epoch
    eval_every: int | None = None  # null: once per epoch

    def validate(self, source: str = "config") -> None:
        filled = TrainerConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TrainerConfig)})
        filled.steps = 1 if self.steps is None else self.steps
        filled.eval_every = 1 if self.eval_every is None else self.eval_every
        TrainerConfig.validate(filled, source)


@dataclasses.dataclass
class VAERunConfig:
    """One ``tfmusic vae train`` run (see the module docstring)."""

    vae: VAEConfig
    data_dir: str | None = None  # dMelodies or measures TFRecords; images are procedural
    limit: int | None = None  # dSprites: first N items of each split
    epochs: float | None = None  # training length when trainer.steps is null (null: the family's)
    trainer: VAETrainerConfig = dataclasses.field(default_factory=VAETrainerConfig)

    def validate(self, source: str = "config") -> None:
        try:
            self.vae.validate()
        except ValueError as err:
            raise ConfigError(f"{source}: vae: {err}") from None
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"{source}: epochs must be > 0, got {self.epochs}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{source}: limit must be >= 1 or null, got {self.limit}")
        self.trainer.validate(source)


def default_batch_size(model: str, objective: str) -> int:
    """The spec's global batch size (B.2, C.8); the dSprites Factor-VAE uses 1024."""
    return 1024 if model == "sprites" and objective == "factor" else DEFAULT_BATCH[family_of(model)]


def default_config_dict(model: str, objective: str) -> dict[str, Any]:
    """The defaults of ``model`` / ``objective`` as a nested dict (what the layers merge over)."""
    try:
        family = family_of(model)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    # keep_model final: the papers score the trained model, and the capacity (|KL - C|) and Factor-VAE losses are
    # not monotone, so "lowest validation loss" picked step-25 checkpoints with chance-level reconstructions
    trainer = VAETrainerConfig(batch_size=default_batch_size(model, objective), eval_steps=20, log_every=10, seed=0,
                               keep_model="final")
    trainer.plateau.patience = None
    trainer.early_stopping.patience = None
    config = VAERunConfig(vae=VAEConfig(model=model, objective=objective), epochs=float(DEFAULT_EPOCHS[family]),
                          trainer=trainer)
    config.validate("defaults")
    return to_dict(config)


def resolve_config(model: str, objective: str, layers: list[tuple[str, Mapping[str, Any]]]) -> VAERunConfig:
    """Merge ``(source, dict)`` layers over the defaults; later layers win, errors name their layer."""
    merged = default_config_dict(model, objective)
    for source, layer in layers:
        section = layer.get("vae")
        for key, wanted in (("model", model), ("objective", objective)):
            if isinstance(section, Mapping) and section.get(key, wanted) != wanted:
                raise ConfigError(f"{source}: configures vae.{key} {section[key]!r} but {wanted!r} is being trained")
        candidate = deep_merge(merged, layer)
        from_dict(VAERunConfig, candidate, source)  # raises with the source named
        merged = candidate
    return from_dict(VAERunConfig, merged, "config")


def finalize_config(config: VAERunConfig, train_examples: int) -> VAERunConfig:
    """``config`` with its data-dependent values filled in (see the module docstring)."""
    trainer = config.trainer
    spe = config.vae.steps_per_epoch or max(1, math.ceil(train_examples / trainer.batch_size))
    epochs = config.epochs if config.epochs is not None else DEFAULT_EPOCHS[family_of(config.vae.model)]
    steps = trainer.steps if trainer.steps is not None else max(1, int(round(epochs * spe)))
    filled = {**to_dict(trainer), "steps": steps, "eval_every": trainer.eval_every or min(spe, steps),
              "log_every": min(trainer.log_every, steps)}
    return dataclasses.replace(config, vae=dataclasses.replace(config.vae, steps_per_epoch=spe),
                               trainer=from_dict(VAETrainerConfig, filled, "config"))


__all__ = ["VAEConfig", "VAETrainerConfig", "VAERunConfig", "DEFAULT_BATCH", "DEFAULT_EPOCHS",
           "default_batch_size", "default_config_dict", "resolve_config", "finalize_config"]
