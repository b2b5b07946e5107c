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

__all__ = ["convert_openunmix_folder", "load_openunmix_state_dict"]

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


def _read_json(path: str) -> dict:
    import json

    if not os.path.isfile(path):
        raise FileNotFoundError(2, "missing in the Open-Unmix model folder", path)
    try:
        with open(path) as fh:
            return json.load(fh)
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _target_weights(folder: str, target: str) -> str:
    """``<target>.pth`` or the hub-style ``<target>-<sha256 prefix>.pth``."""
    import glob

    exact = os.path.join(folder, f"{target}.pth")
    if os.path.isfile(exact):
        return exact
    found = sorted(glob.glob(os.path.join(glob.escape(folder), f"{glob.escape(target)}-*.pth")))
    if not found:
        raise FileNotFoundError(2, f"no weights for target '{target}' ({target}.pth)", exact)
    return found[0]


def convert_openunmix_folder(folder: str | os.PathLike, targets: list[str] | None = None):
    """An Open-Unmix model folder -> a tfmusic :class:`~tfmusic.models.separator.Separator`.

    The folder is what openunmix's training writes and ``umx --model DIR`` reads: ``separator.json``
    (sample_rate, nfft, nhop, nb_channels), then per target ``<target>.json`` (its ``args``:
    nfft, nb_channels, hidden_size; optional nb_layers / unidirectional) and ``<target>.pth``
    (``max_bin`` is the length of ``input_mean``, as openunmix infers it). Targets default to every
    ``<target>.json`` beside ``separator.json``. No Wiener filtering (openunmix's ``niter=0``).
    """
    from tfmusic.audio.io import DEFAULT_SAMPLE_RATE
    from tfmusic.models.separator import Separator

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, "not an Open-Unmix model folder", folder)
    conf = _read_json(os.path.join(folder, "separator.json"))
    missing = [k for k in ("sample_rate", "nfft", "nhop") if k not in conf]
    if missing:
        raise ValueError(f"{folder}/separator.json: missing {', '.join(missing)}")
    if int(round(float(conf["sample_rate"]))) != DEFAULT_SAMPLE_RATE:
        raise ValueError(f"{folder}/separator.json: sample_rate {conf['sample_rate']} - tfmusic separators "
                         f"run at {DEFAULT_SAMPLE_RATE} Hz")
    if targets is None:
        targets = sorted(name[:-5] for name in os.listdir(folder)
                         if name.endswith(".json") and name != "separator.json")
    if not targets:
        raise ValueError(f"{folder}: no <target>.json next to separator.json")
    models = {}
    for target in targets:
        info = _read_json(os.path.join(folder, f"{target}.json"))
        args = info.get("args", info)
        if int(args.get("nfft", conf["nfft"])) != int(conf["nfft"]):
            raise ValueError(f"{folder}/{target}.json: nfft {args['nfft']} differs from separator.json's {conf['nfft']}")
        path = _target_weights(folder, target)
        state = _read_state_dict(path)
        if "input_mean" not in state:
            raise ValueError(f"{path}: no input_mean; is this an Open-Unmix target model?")
        model = OpenUnmix(nb_channels=int(args.get("nb_channels", conf.get("nb_channels", 2))),
                          hidden_size=int(args.get("hidden_size", 512)), nb_layers=int(args.get("nb_layers", 3)),
                          n_bins=int(conf["nfft"]) // 2 + 1, max_bin=int(state["input_mean"].shape[0]),
                          unidirectional=bool(args.get("unidirectional", False)), target=target,
                          n_fft=int(conf["nfft"]), hop_length=int(conf["nhop"]))
        models[target] = load_openunmix_state_dict(model, path)
    return Separator(models)
