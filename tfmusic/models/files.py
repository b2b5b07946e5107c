"""Loading ``.keras`` files safely: model files are data, never code.

A ``.keras`` file can carry a ``Lambda`` layer whose Python bytecode runs on load. Keras' safe mode
refuses such files; tfmusic always loads with it on and turns the refusal into an error that names
the file, so a model downloaded or handed over by someone else cannot execute anything here.
"""

from __future__ import annotations

import os

import keras


class UnsafeModelError(ValueError):
    """A model file asks to run stored Python code (e.g. a ``Lambda`` layer) and was refused."""


def _restore_unbuilt_weights(model, archive: str) -> None:
    """Build sub-models the file left unbuilt and load their weights again.

    A model saved under a mixed policy has no ``build_config`` (Keras records none when the first
    call casts its inputs), so loading restores only the top-level variables (4 of IASS's 116) and
    keeps the others freshly initialized, silently. tfmusic's models can build themselves
    (``build_for_frames``); after that the archive's weights load in full.
    """
    parts = list(model.targets.values()) if isinstance(getattr(model, "targets", None), dict) else [model]
    before = len(model.weights)
    for part in parts:
        if hasattr(part, "build_for_frames"):
            part.build_for_frames()
    if len(model.weights) != before:
        model.load_weights(archive)


def load_keras_file(path: str | os.PathLike, *, compile: bool = False):
    """``keras.saving.load_model(path, safe_mode=True)`` in float32, with clear errors naming ``path``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "model file does not exist", path)
    float32_path = _float32_copy(path)
    try:
        model = keras.saving.load_model(float32_path or path, compile=compile, safe_mode=True)
        _restore_unbuilt_weights(model, float32_path or path)
        return model
    except ValueError as err:
        text = str(err)
        if "safe_mode" in text or "lambda" in text.lower():
            raise UnsafeModelError(f"{path}: refused - the file stores Python code (e.g. a Lambda layer), "
                                   f"which tfmusic never runs from a model file") from None
        raise ValueError(f"{path}: could not load the Keras model ({err})") from err
    except Exception as err:  # zip/h5 corruption, unknown classes, ...
        raise ValueError(f"{path}: could not load the Keras model ({type(err).__name__}: {err})") from err
    finally:
        if float32_path:
            os.unlink(float32_path)


def _float32_config(value):
    """A layer config with every dtype policy replaced by float32 (nested layers included)."""
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and "config" in value:
            return {**value, "config": {**value["config"], "name": "float32"}}
        return {k: _float32_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_float32_config(v) for v in value]
    if isinstance(value, str) and value in ("mixed_bfloat16", "mixed_float16", "bfloat16", "float16"):
        return "float32"
    return value



def _float32_copy(path: str) -> str | None:
    """A temp copy of a ``.keras`` archive whose config computes in float32, or None if it already does.

    Training under ``mixed_bfloat16``/``mixed_float16`` saves every layer with that policy, and
    Keras cannot rebuild such a model from the file (it restores 4 of IASS's 116 weights, silently).
    The stored variables are the float32 master weights, so rewriting the policies in
    ``config.json`` and loading that gives the trained model in float32: one dtype for inference,
    export and ONNX.
    """
    import json
    import tempfile
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            fixed = _float32_config(config)
            if fixed == config:
                return None
            fd, tmp = tempfile.mkstemp(suffix=".keras")
            os.close(fd)
            with zipfile.ZipFile(tmp, "w") as out:
                for item in archive.infolist():
                    data = json.dumps(fixed).encode() if item.filename == "config.json" else archive.read(item)
                    out.writestr(item, data)
            return tmp
    except (zipfile.BadZipFile, KeyError, ValueError):
        return None  # not a .keras zip: let Keras report it
