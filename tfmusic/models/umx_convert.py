"""Load an Open-Unmix PyTorch ``state_dict`` (e.g. the public umxhq per-target weights) into Keras.

The Keras :class:`~tfmusic.models.openunmix.OpenUnmix` mirrors the PyTorch module weight for weight
(two LSTM bias vectors included), so conversion is transposes only: ``Linear.weight (out, in)`` ->
``Dense.kernel (in, out)``, ``LSTM.weight_ih (4H, in)`` -> ``kernel (in, 4H)``; BatchNorm weight,
bias, running mean/var -> gamma, beta, moving mean/variance. Gate order (i, f, g, o) is shared.
STFT window buffers that some releases keep in the state dict (``stft.*``, ``transform.*``) are
ignored; any other unknown or missing key is an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfmusic.models.openunmix import OpenUnmix

__all__ = ["load_openunmix_state_dict"]

_IGNORED_PREFIXES = ("stft.", "transform.", "sample_rate")


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _read_state_dict(state_dict_or_path: Mapping[str, Any] | str | os.PathLike) -> dict[str, np.ndarray]:
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        path = os.fspath(state_dict_or_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(path)
        try:
            import torch
        except ImportError as err:  # pragma: no cover - depends on the optional extra
            raise ImportError(f"reading {path} needs torch: pip install 'tfmusic[torch]'") from err
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{path}: not a readable PyTorch state_dict ({err})") from err
        if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
            loaded = loaded["state_dict"]  # a training checkpoint rather than a bare state_dict
        source = path
    else:
        loaded, source = state_dict_or_path, "state_dict"
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{source}: expected a mapping of parameter names to tensors, got {type(loaded).__name__}")
    return {k: _to_numpy(v) for k, v in loaded.items() if not str(k).endswith("num_batches_tracked")}


def _assign(variable, value: np.ndarray, key: str, source: str) -> None:
    if tuple(variable.shape) != value.shape:
        raise ValueError(
            f"{source}: {key} has shape {value.shape}, the Keras model expects {tuple(variable.shape)} "
            "(check nb_channels, hidden_size, nb_layers, max_bin and unidirectional)"
        )
    variable.assign(value)


def load_openunmix_state_dict(
    model: OpenUnmix, state_dict_or_path: Mapping[str, Any] | str | os.PathLike
) -> OpenUnmix:
    """Copy an Open-Unmix ``state_dict`` (mapping or ``.pth`` path) into ``model``; returns ``model``."""
    source = os.fspath(state_dict_or_path) if isinstance(state_dict_or_path, (str, os.PathLike)) else "state_dict"
    state = _read_state_dict(state_dict_or_path)
    if not model.built:
        model.build_for_frames()
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise ValueError(f"{source}: missing parameter {key!r}; is this an Open-Unmix target model?")
        used.add(key)
        return state[key]

    def put(variable, key: str, transpose: bool = False) -> None:
        value = take(key)
        _assign(variable, value.T if transpose else value, key, source)

    put(model.input_mean, "input_mean")
    put(model.input_scale, "input_scale")
    put(model.output_scale, "output_scale")
    put(model.output_mean, "output_mean")
    for name in ("fc1", "fc2", "fc3"):
        put(getattr(model, name).kernel, f"{name}.weight", transpose=True)
    for name in ("bn1", "bn2", "bn3"):
        bn = getattr(model, name)
        put(bn.gamma, f"{name}.weight")
        put(bn.beta, f"{name}.bias")
        put(bn.moving_mean, f"{name}.running_mean")
        put(bn.moving_variance, f"{name}.running_var")
    for i, layer in enumerate(model.lstms):
        directions = [(layer, "")] if model.unidirectional else [
            (layer.forward_layer, ""), (layer.backward_layer, "_reverse")]
        for lstm, suffix in directions:
            cell = lstm.cell
            put(cell.kernel, f"lstm.weight_ih_l{i}{suffix}", transpose=True)
            put(cell.recurrent_kernel, f"lstm.weight_hh_l{i}{suffix}", transpose=True)
            put(cell.input_bias, f"lstm.bias_ih_l{i}{suffix}")
            put(cell.recurrent_bias, f"lstm.bias_hh_l{i}{suffix}")
    unknown = sorted(k for k in state if k not in used and not k.startswith(_IGNORED_PREFIXES))
    if unknown:
        raise ValueError(f"{source}: parameters the Keras Open-Unmix has no place for: {', '.join(unknown[:8])}")
    return model
