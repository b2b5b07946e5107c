"""Checkpoints for the trainer: the resumable state, the latest/best managers, worker-safe paths.

Layout under ``<run_dir>/checkpoints/``:

- ``ckpt-<step>.*`` + ``checkpoint``: the latest ``keep`` full checkpoints (every object the task
  lists in ``checkpoint_items()`` - models, optimizers with their slots and iteration counters,
  loss-scale state, RNG states - plus the trainer's :class:`TrainerState`).
- ``best/best-<step>.*``: the exported model's weights at the best evaluation so far.

Crash safety (SIGKILL at any point, see ``tfmusic.training.faults`` and tests/test_reliability_kill.py):
TensorFlow writes a checkpoint's files under temporary names and the ``checkpoint`` pointer file
last, atomically, so a resume never reads a half-written checkpoint. A best-model checkpoint is
only *committed* by the next full checkpoint, whose trainer state names its step: ``restore_best``
loads exactly that step, and older or orphaned ``best-*`` files (written after the last full
checkpoint by a run that was then killed) are pruned only after a full checkpoint commits.
``model.keras`` is written to a temporary name and renamed into place.

With ``MultiWorkerMirroredStrategy`` every worker must take part in saving; only the chief writes
into the run directory, the others save into a private scratch folder that is deleted again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import tensorflow as tf

from tfmusic.training import faults

RESERVED_ITEM = "trainer"


class VariableBundle(tf.Module):
    """A checkpointable view of a Keras object's ``variables`` (all state, including RNG seeds).

    Keras 3 layers keep sublayers in plain lists that TensorFlow's object graph does not follow,
    and variable paths carry process-global name counters (``dense_3``). Listing ``variables``
    by position is stable for a given architecture and catches everything: weights, BatchNorm
    statistics, dropout seed-generator states, optimizer slots, iteration counts and loss scales.
    """

    def __init__(self, variables: list, name: str = "bundle") -> None:
        super().__init__(name=name)
        self.count = len(variables)
        for index, variable in enumerate(variables):
            setattr(self, f"v{index:04d}", variable)


def as_trackable(item: Any, name: str = "item") -> Any:
    """Keras models, layers and optimizers become :class:`VariableBundle`\ s; others pass through."""
    import keras

    if isinstance(item, (keras.layers.Layer, keras.optimizers.Optimizer)):
        return VariableBundle(list(item.variables), name=name)
    return item


class TrainerState(tf.Module):
    """The trainer's own resumable state: the global step and a JSON blob.

    The blob holds the plateau / early-stopping counters, the evaluation history and the
    best metric, so they are always consistent with the weights saved beside them.
    """

    def __init__(self) -> None:
        super().__init__(name="trainer_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.blob = tf.Variable("{}", dtype=tf.string, trainable=False, name="blob")

    def get(self) -> dict[str, Any]:
        return json.loads(self.blob.numpy().decode("utf-8"))

    def set(self, data: Mapping[str, Any]) -> None:
        self.blob.assign(json.dumps(data))


class CheckpointKeeper:
    """Saves and restores the latest full checkpoint and the best-model weights."""

    def __init__(self, items: Mapping[str, Any], best_model: Any, directory: str | Path, *,
                 state: TrainerState, chief: bool = True, worker: int = 0, keep: int = 3) -> None:
        if RESERVED_ITEM in items:
            raise ValueError(f"checkpoint item name {RESERVED_ITEM!r} is reserved for the trainer")
        self.directory = Path(directory)
        self.chief = chief
        self._scratch: Path | None = None
        if chief:
            save_dir = self.directory
        else:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"tfmusic-worker{worker}-ckpt-"))
            save_dir = self._scratch
        self.state = state
        tracked = {key: as_trackable(value, key) for key, value in items.items()}
        self.checkpoint = tf.train.Checkpoint(**{RESERVED_ITEM: state}, **tracked)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(save_dir), max_to_keep=keep, step_counter=state.step,
            checkpoint_name="ckpt",
        )
        self.best_checkpoint = tf.train.Checkpoint(model=as_trackable(best_model, "model"))
        self._best_dir = save_dir / "best"
        # Resume always reads the chief's files (a shared file system for multi-worker runs).
        self._latest_reader = tf.train.CheckpointManager(
            self.checkpoint, str(self.directory), max_to_keep=keep, step_counter=state.step,
            checkpoint_name="ckpt",
        ) if not chief else self.manager

    @property
    def latest(self) -> str | None:
        return self._latest_reader.latest_checkpoint

    def restore_latest(self) -> bool:
        """Restore the newest checkpoint in the run directory; False when there is none."""
        path = self.latest
        if path is None:
            return False
        try:
            self.checkpoint.restore(path).assert_consumed()
        except AssertionError as err:
            raise ValueError(
                f"{path}: the checkpoint does not match the task's models/optimizers "
                f"(different architecture or config?): {err}"
            ) from None
        return True

    def save(self, step: int, best_step: int | None = None) -> str:
        """A full checkpoint at ``step``; it commits the best checkpoint ``best_step`` (the others go)."""
        options = tf.train.CheckpointOptions(experimental_write_callbacks=[lambda: faults.point("checkpoint-write")])
        path = self.manager.save(checkpoint_number=step, options=options)
        self._prune_best(keep=best_step)
        self._clean_scratch()
        return path

    def save_best(self, step: int) -> str:
        """The export model's weights as ``best/best-<step>`` (committed by the next :meth:`save`)."""
        path = self.best_checkpoint.write(str(self._best_dir / f"best-{step}"))
        faults.point("best-write")
        self._clean_scratch()
        return path

    def restore_best(self, step: int | None) -> bool:
        """Load the best weights of ``step`` (the committed trainer state's best step) into the
        export model, from the chief's directory; False when there are none."""
        if step is None:
            return False
        prefix = self.directory / "best" / f"best-{int(step)}"
        if not Path(f"{prefix}.index").is_file():
            return False
        self.best_checkpoint.read(str(prefix)).assert_consumed()  # read: written by write()
        return True

    def _prune_best(self, keep: int | None) -> None:
        """Delete every ``best-<n>`` but ``keep`` (run after a full checkpoint committed it)."""
        if not self._best_dir.is_dir():
            return
        if keep is not None and Path(f"{self._best_dir / f'best-{int(keep)}'}.index").is_file():
            # the pointer for tf.train.latest_checkpoint readers (CheckpointState text proto), written
            # atomically and only for a committed best
            name = f"best-{int(keep)}"
            tmp = self._best_dir / "checkpoint.tmp"
            tmp.write_text(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
            os.replace(tmp, self._best_dir / "checkpoint")
        pattern = re.compile(r"^best-(\d+)[._]")
        for child in self._best_dir.iterdir():
            match = pattern.match(child.name)
            if match is None or (keep is not None and int(match.group(1)) == int(keep)):
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    def _clean_scratch(self) -> None:
        if self._scratch is not None:
            for child in self._scratch.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def save_model_atomic(model: Any, path: str | Path) -> None:
    """``model.save(path)`` through a temporary sibling renamed into place: Keras writes the zip
    in place, so a kill mid-save would otherwise leave a torn ``model.keras`` for loaders to find."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")  # Keras insists on the .keras suffix
    tmp.unlink(missing_ok=True)
    model.save(tmp)
    faults.point("model-export")
    os.replace(tmp, path)
