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


def load_keras_file(path: str | os.PathLike, *, compile: bool = False):
    """``keras.saving.load_model(path, safe_mode=True)`` with clear errors naming ``path``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "model file does not exist", path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except ValueError as err:
        text = str(err)
        if "safe_mode" in text or "lambda" in text.lower():
            raise UnsafeModelError(f"{path}: refused - the file stores Python code (e.g. a Lambda layer), "
                                   f"which tfmusic never runs from a model file") from None
        raise ValueError(f"{path}: could not load the Keras model ({err})") from err
    except Exception as err:  # zip/h5 corruption, unknown classes, ...
        raise ValueError(f"{path}: could not load the Keras model ({type(err).__name__}: {err})") from err
