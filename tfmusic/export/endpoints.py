"""The signatures a SavedModel export serves: named input specs, the function, fresh example inputs.

* separation: ``serving_default`` ``waveform`` float32 ``(batch, channels, samples)`` at 44.1 kHz
  -> one output per target (same shape); ``activity`` ``waveform`` -> ``{target: (batch, frames)}``
  for the targets that predict instrument activity; ``pitch`` ``waveform`` -> ``{target: (batch, 88, frames)}``
  key probabilities (A0..C8) for IASS+pitch targets, and then also ``transcribe`` ``waveform`` -> every
  output at once (stems, ``<target>_activity``, ``<target>_pitch``): what ``tfmusic separate --transcribe``
  needs from one run of the model (the ONNX export of such a separator and the gRPC client use it, where
  three signatures would run the model three times). A variable-length signature has a minimum
  length (the STFT's reflect padding and the model's own padding need enough samples), found by
  probing the model here and checked in the graph: shorter inputs get INVALID_ARGUMENT naming it.
* VAE: ``encode`` ``x`` -> ``mean``, ``log_std``; ``decode`` ``z`` -> ``logits``; ``traverse``
  ``x`` ``(batch, ...)``, ``dimension`` int32 ``(batch,)``, ``values`` float32 ``(batch, n)`` -> ``z``
  ``(batch, n, z)`` and ``logits`` ``(batch, n, ...)``; ``serving_default`` is ``encode``.

Every input of every signature has the batch dimension first (TF Serving's batching refuses
others; see :mod:`tfmusic.export.saved_model`). Kept apart from the writer so what a model serves
is read in one place and the writer and validation stay model-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from tfmusic.serving.repository import ACTIVITY_SUFFIX, PITCH_SUFFIX, TRANSCRIBE  # the names both sides read

WAVEFORM = "waveform"
HOP = 1024  # chunk lengths stay whole STFT hops so activity frames line up

__all__ = ["ACTIVITY_SUFFIX", "HOP", "PITCH_SUFFIX", "TRANSCRIBE", "WAVEFORM", "Endpoint", "ExportError",
           "min_separator_samples", "separator_endpoints", "vae_endpoints", "vae_input_spec"]


class ExportError(RuntimeError):
    """An export that could not be written or failed validation."""


@dataclass
class Endpoint:
    """One signature: ``fn(*tensors)`` -> dict of tensors, with named input specs (order = call order).

    ``example`` returns fresh random numpy inputs (keyed like ``inputs``) for warmup and parity checks.
    """

    name: str
    fn: Callable[..., Mapping[str, Any]]
    inputs: list  # list[tf.TensorSpec], each with a name
    example: Callable[[np.random.Generator], dict[str, np.ndarray]]
    outputs: list[str] = field(default_factory=list)  # output keys when known up front
    min_samples: int | None = None  # separators: fewest waveform samples the signature accepts


def _probe_outputs(model, channels: int, samples: int) -> dict[str, tuple]:
    outputs = model(np.zeros((1, channels, samples), np.float32), training=False)
    if not isinstance(outputs, Mapping):
        raise ExportError(f"separator must return a dict of outputs, got {type(outputs).__name__}")
    return {k: tuple(v.shape) for k, v in outputs.items()}


def separator_endpoints(model, channels: int = 2, example_samples: int = 16384,
                        samples: int | None = None) -> list[Endpoint]:
    """``serving_default`` (waveform -> stems) and, if the model predicts activity, ``activity``.

    ``samples`` fixes the waveform length of the signature (a multiple of the 1024 hop; clients
    then send exactly that many samples per request); ``None`` accepts any length.
    """
    import tensorflow as tf

    if samples is not None:
        if samples <= 0 or samples % HOP:
            raise ExportError(f"fixed samples must be a positive multiple of {HOP}, got {samples}")
        example_samples = samples
    shapes = _probe_outputs(model, channels, example_samples)
    stems = sorted(k for k in shapes if not k.endswith((ACTIVITY_SUFFIX, PITCH_SUFFIX)))
    pitch = sorted(k[: -len(PITCH_SUFFIX)] for k in shapes if k.endswith(PITCH_SUFFIX))
    activity = sorted(k[: -len(ACTIVITY_SUFFIX)] for k in shapes if k.endswith(ACTIVITY_SUFFIX))
    if not stems:
        raise ExportError(f"separator returned no stem outputs (got {sorted(shapes)})")
    spec = tf.TensorSpec((None, channels, samples), tf.float32, name=WAVEFORM)
    shortest = samples or min_separator_samples(model, channels, example_samples)

    def example(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {WAVEFORM: (0.1 * rng.standard_normal((1, channels, example_samples))).astype(np.float32)}

    def checked(waveform):
        if samples is not None or shortest <= 1:
            return waveform
        check = tf.debugging.assert_greater_equal(
            tf.shape(waveform)[-1], shortest,
            message=f"waveform too short: this separator needs at least {shortest} samples per channel")
        with tf.control_dependencies([check]):
            return tf.identity(waveform)

    def serve_stems(waveform):
        out = model(checked(waveform), training=False)
        return {t: out[t] for t in stems}

    endpoints = [Endpoint("serving_default", serve_stems, [spec], example, stems, shortest)]
    if activity:
        def serve_activity(waveform):
            out = model(checked(waveform), training=False)
            return {t: out[t + ACTIVITY_SUFFIX] for t in activity}

        endpoints.append(Endpoint("activity", serve_activity, [spec], example, activity, shortest))
    if pitch:
        def serve_pitch(waveform):
            out = model(checked(waveform), training=False)
            return {t: out[t + PITCH_SUFFIX] for t in pitch}

        endpoints.append(Endpoint("pitch", serve_pitch, [spec], example, pitch, shortest))

        def serve_all(waveform):
            return dict(model(checked(waveform), training=False))

        endpoints.append(Endpoint(TRANSCRIBE, serve_all, [spec], example, sorted(shapes), shortest))
    return endpoints


def min_separator_samples(model, channels: int, works: int) -> int:
    """Fewest samples per channel the separator runs on (binary search; ``works`` is a length known to run).

    Shorter inputs fail deep inside the graph (e.g. a MirrorPad error from reflect padding), so the
    export states the minimum and checks it up front.
    """
    def runs(n: int) -> bool:
        try:
            model(np.zeros((1, channels, n), np.float32), training=False)
            return True
        except Exception:  # noqa: BLE001 - any failure means "too short"
            return False

    lo, hi = 0, int(works)  # runs(lo) is False (or lo == 0), runs(hi) is True
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs(mid) else (mid, hi)
    return hi


def vae_endpoints(model, input_shape: tuple, input_dtype: str = "float32",
                  input_high: int | None = None, n_traverse: int = 5) -> list[Endpoint]:
    """``serving_default``/``encode``, ``decode`` and ``traverse`` for a model with encode/decode.

    ``input_shape`` excludes the batch axis. Integer inputs (tokens) draw examples in
    ``[0, input_high)``.
    """
    import tensorflow as tf

    for attr in ("encode", "decode"):
        if not callable(getattr(model, attr, None)):
            raise ExportError(f"VAE export needs model.{attr}(); {type(model).__name__} has none")
    dtype = tf.as_dtype(input_dtype)
    if dtype.is_integer and not input_high:
        raise ExportError("integer VAE inputs need input_high (number of token classes) for examples")
    x_spec = tf.TensorSpec((None, *input_shape), dtype, name="x")
    mean, _ = model.encode(tf.zeros((1, *input_shape), dtype), training=False)
    z_dim = int(mean.shape[-1])
    z_spec = tf.TensorSpec((None, z_dim), tf.float32, name="z")

    def x_example(rng):
        if dtype.is_integer:
            return rng.integers(0, input_high, size=(2, *input_shape)).astype(dtype.as_numpy_dtype)
        return rng.standard_normal((2, *input_shape)).astype(dtype.as_numpy_dtype)

    def encode(x):
        mean, log_std = model.encode(x, training=False)
        return {"mean": mean, "log_std": log_std}

    def decode(z):
        return {"logits": model.decode(z, training=False)}

    def traverse(x, dimension, values):
        # Every input carries the batch dimension (dimension: (B,), values: (B, V)) so TF Serving's
        # batching, which batches every signature, accepts the request and its warmup record.
        mean, _ = model.encode(x, training=False)
        batch = tf.shape(mean)[0]
        n_values = tf.shape(values)[1]
        mask = tf.one_hot(dimension, z_dim, dtype=mean.dtype)[:, None, :]  # (B, 1, z)
        z = mean[:, None, :] * (1.0 - mask) + values[:, :, None] * mask  # (B, V, z)
        logits = model.decode(tf.reshape(z, (-1, z_dim)), training=False)
        rest = tf.shape(logits)[1:]
        logits = tf.reshape(logits, tf.concat([[batch, n_values], rest], axis=0))
        return {"z": z, "logits": logits}

    traverse_specs = [x_spec, tf.TensorSpec((None,), tf.int32, name="dimension"),
                      tf.TensorSpec((None, None), tf.float32, name="values")]

    def traverse_example(rng):
        x = x_example(rng)
        return {"x": x, "dimension": rng.integers(0, z_dim, size=len(x)).astype(np.int32),
                "values": np.tile(np.linspace(-2, 2, n_traverse).astype(np.float32), (len(x), 1))}

    return [
        Endpoint("serving_default", encode, [x_spec], lambda rng: {"x": x_example(rng)}),
        Endpoint("encode", encode, [x_spec], lambda rng: {"x": x_example(rng)}),
        Endpoint("decode", decode, [z_spec],
                 lambda rng: {"z": rng.standard_normal((2, z_dim)).astype(np.float32)}),
        Endpoint("traverse", traverse, traverse_specs, traverse_example),
    ]


def vae_input_spec(model) -> tuple[tuple[int, ...], str, int | None]:
    """``(input shape without batch, dtype, token classes or None)`` of a tfmusic VAE.

    Token models (``encoder.build_input_dtype == "int32"``) take sequences as long as the decoder
    writes; image models take inputs shaped like the decoder's logits.
    """
    import tensorflow as tf

    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(model, "z_dim"):
        raise ExportError(f"cannot infer the input of {type(model).__name__}; pass input_shape/input_dtype")
    dtype = getattr(encoder, "build_input_dtype", "float32")
    logits = model.decode(tf.zeros((1, int(model.z_dim)), tf.float32), training=False)
    shape = tuple(int(d) for d in logits.shape[1:])
    if tf.as_dtype(dtype).is_integer:
        return shape[:-1], dtype, int(getattr(encoder, "vocab_size", shape[-1]))
    return shape, dtype, None
