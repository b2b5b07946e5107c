"""Waveform-in, waveforms-out separation with one spectrogram model per target.

``Separator({"vocals": iass, "drums": umx, ...})(waveform (B, C, S))`` returns
``{target: (B, C, S)}`` (and, with ``residual="other"``, the mixture minus all of them) plus ``{f"{target}_activity": (B, T)}`` (per-frame activity probability,
``sigmoid(activity_logits)``) for every IASS target, and ``{f"{target}_pitch": (B, 88, T)}`` (per-key
probabilities, keys first so frames stay the last axis) for every IASS+pitch target. Steps: STFT (``center=True`` so edges
reconstruct), magnitude, each model's mask, then either the mask applied to the complex mixture
(mixture phase) or, with ``wiener_iterations > 0``, a multichannel Wiener EM post-filter, then iSTFT.

Channel handling: a mono model on stereo input sees the magnitude of the channel mean (a time-domain
mixdown, as the mono training data and the IASS test code) and its mask is applied to every
channel; a multichannel model on mono input sees the channel repeated and its masks are averaged.

Wiener EM (Duong et al. 2010 / norbert, the IASS paper's "future work"): sources are the targets
plus a residual (mixture minus all targets, so a single target still has a competitor). Per
iteration: PSD ``v_j = mean_c |y_j|^2``, spatial covariance ``R_j(f) = sum_t y_j y_j^H / sum_t v_j``,
mixture covariance ``Cx = sum_j v_j R_j + reg I``, update ``y_j = v_j R_j Cx^{-1} x``. Complex
``C x C`` matrices are carried as real ``2C x 2C`` blocks ``[[Re, -Im], [Im, Re]]`` so everything is
real ``keras.ops`` arithmetic. Memory grows with frames x bins x (2C)^2, which is why long audio goes
through :mod:`tfmusic.audio.chunking`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import keras
from keras import ops

from tfmusic.audio.settings import AudioSettings, check_same, settings_of
from tfmusic.audio.stft import ISTFT, STFT, Magnitude
from tfmusic.models.files import load_keras_file
from tfmusic.models.iass import IASS
from tfmusic.models.iass_pitch import IASSPitch  # noqa: F401  (registers the class for loading .keras files)
from tfmusic.models.openunmix import OpenUnmix

__all__ = ["Separator", "load_separator", "wiener_em"]

_WIENER_EPS = 1e-10
_WIENER_REG = 1e-5


def _block_outer(y_re, y_im):
    """Sum over time of ``y y^H`` in real block form: ``(..., C, T, F)`` -> ``(..., F, 2C, 2C)``."""
    u = ops.concatenate([y_re, y_im], axis=-3)
    ju = ops.concatenate([-y_im, y_re], axis=-3)
    return ops.einsum("...ctf,...dtf->...fcd", u, u) + ops.einsum("...ctf,...dtf->...fcd", ju, ju)


def wiener_em(y_re, y_im, x_re, x_im, iterations: int = 1):
    """Multichannel Wiener EM. ``y_*``: initial source estimates ``(J, B, C, T, F)``; ``x_*``: mixture
    ``(B, C, T, F)``. Returns refined ``(y_re, y_im)`` of the same shape (see module docstring)."""
    channels = x_re.shape[1]
    if channels is None:
        raise ValueError("wiener_em needs a static number of channels")
    # Scale so the largest magnitude is <= 10: keeps the regularization meaningful (as norbert).
    peak = ops.max(ops.sqrt(ops.square(x_re) + ops.square(x_im)), axis=(1, 2, 3), keepdims=True)
    scale = ops.maximum(1.0, peak / 10.0)
    x_re, x_im = x_re / scale, x_im / scale
    y_re, y_im = y_re / scale, y_im / scale
    x_u = ops.concatenate([x_re, x_im], axis=1)  # (B, 2C, T, F)
    eye = ops.eye(2 * channels, dtype=x_re.dtype)
    for _ in range(iterations):
        v = ops.mean(ops.square(y_re) + ops.square(y_im), axis=2)  # (J, B, T, F)
        cov = _block_outer(y_re, y_im)  # (J, B, F, 2C, 2C)
        cov = cov / (_WIENER_EPS + ops.sum(v, axis=2))[..., None, None]
        # (B, T, F, 2C, 2C) mixture covariance, accumulated one source at a time.
        mix_cov = _WIENER_REG * eye
        for j in range(v.shape[0]):
            mix_cov = mix_cov + v[j][..., None, None] * cov[j][:, None]
        z = ops.einsum("btfcd,bdtf->btfc", ops.inv(mix_cov), x_u)  # Cx^-1 x
        new = [ops.einsum("bfcd,btfd->bctf", cov[j], z) * v[j][:, None] for j in range(v.shape[0])]
        new = ops.stack(new, axis=0)  # (J, B, 2C, T, F)
        y_re, y_im = new[:, :, :channels], new[:, :, channels:]
    return y_re * scale, y_im * scale


@keras.saving.register_keras_serializable(package="tfmusic")
class Separator(keras.Model):
    """Separate a mixture waveform with one IASS or Open-Unmix model per target (module docstring).

    ``stft_method``: "dft" (default; matmul basis, converts to ONNX) or "fft" (about 20x faster
    STFT/iSTFT on CPU, for in-process use; tf2onnx cannot convert it).
    """

    def __init__(
        self,
        targets: Mapping[str, keras.Model],
        n_fft: int | None = None,
        hop_length: int | None = None,
        wiener_iterations: int = 0,
        pad_mode: str = "reflect",
        stft_method: str = "dft",
        residual: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not targets:
            raise ValueError("Separator needs at least one target model")
        if residual is not None and (residual in targets or residual.endswith(("_activity", "_pitch"))):
            raise ValueError(f"residual name {residual!r} clashes with a target or its activity / pitch outputs")
        self.residual = residual
        if wiener_iterations < 0:
            raise ValueError(f"wiener_iterations must be >= 0, got {wiener_iterations}")
        for name, model in targets.items():
            if not hasattr(model, "nb_channels"):
                raise TypeError(f"target {name!r}: expected an IASS or OpenUnmix model, got {type(model).__name__}")
            if name.endswith(("_activity", "_pitch")):
                raise ValueError(f"target name {name!r} clashes with the activity / pitch outputs")
        self.target_names = list(targets)
        self.target_models = [targets[name] for name in self.target_names]
        # The STFT every target was trained with (their configs carry it); they must agree.
        carried = {name: settings_of(model) for name, model in targets.items()}
        settings = next(iter(carried.values()))
        for name, other in carried.items():
            check_same(settings, other, f"target {name!r} vs target {self.target_names[0]!r}")
        if n_fft is not None or hop_length is not None:
            asked = AudioSettings(settings.sample_rate, int(n_fft or settings.n_fft),
                                  int(hop_length or settings.hop_length))
            check_same(settings, asked, "Separator(n_fft, hop_length) vs its models")
        self.settings = settings
        self.sample_rate = settings.sample_rate
        self.n_fft, self.hop_length = settings.n_fft, settings.hop_length
        self.wiener_iterations = int(wiener_iterations)
        self.pad_mode, self.stft_method = pad_mode, stft_method
        self.stft = STFT(self.n_fft, self.hop_length, center=True, pad_mode=pad_mode, method=stft_method, name="stft")
        self.istft = ISTFT(self.n_fft, self.hop_length, center=True, method=stft_method, name="istft")
        self.magnitude = Magnitude(name="magnitude")

    @property
    def targets(self) -> dict[str, keras.Model]:
        return dict(zip(self.target_names, self.target_models))

    def _model_input(self, mag, x_re, x_im, model_channels: int, channels: int):
        if model_channels == channels:
            return mag
        if model_channels == 1:  # time-domain mixdown, as in training data and the IASS test code
            return self.magnitude(ops.mean(x_re, axis=1, keepdims=True), ops.mean(x_im, axis=1, keepdims=True))
        if channels == 1:
            return ops.repeat(mag, model_channels, axis=1)
        raise ValueError(f"a {model_channels}-channel model cannot separate {channels}-channel audio")

    def call(self, waveform, training=False):
        waveform = ops.convert_to_tensor(waveform, dtype=self.compute_dtype)
        channels = waveform.shape[1]
        if channels is None:
            raise ValueError("Separator needs a static channel count (waveform shape (B, C, S))")
        length = waveform.shape[-1] if waveform.shape[-1] is not None else ops.shape(waveform)[-1]
        x_re, x_im = self.stft(waveform)
        mag = self.magnitude(x_re, x_im)
        outputs = {}
        masks = []
        for name, model in zip(self.target_names, self.target_models):
            out = model(self._model_input(mag, x_re, x_im, model.nb_channels, channels), training=False)
            mask = out["mask"]
            if model.nb_channels > 1 and channels == 1:
                mask = ops.mean(mask, axis=1, keepdims=True)
            masks.append(mask)
            if "activity_logits" in out:
                outputs[f"{name}_activity"] = ops.sigmoid(out["activity_logits"])
            if "pitch_logits" in out:
                outputs[f"{name}_pitch"] = ops.transpose(ops.sigmoid(out["pitch_logits"]), (0, 2, 1))
        y_re = [m * x_re for m in masks]  # mixture phase; broadcasts a mono mask over channels
        y_im = [m * x_im for m in masks]
        if self.wiener_iterations:
            y_re.append(x_re - sum(y_re))  # residual source
            y_im.append(x_im - sum(y_im))
            re, im = wiener_em(ops.stack(y_re), ops.stack(y_im), x_re, x_im, self.wiener_iterations)
            y_re = [re[j] for j in range(len(self.target_names))]
            y_im = [im[j] for j in range(len(self.target_names))]
        for name, re, im in zip(self.target_names, y_re, y_im):
            outputs[name] = self.istft(re, im, length=length)
        if self.residual is not None:  # everything the targets did not take (MUSDB's "other")
            outputs[self.residual] = waveform - sum(outputs[name] for name in self.target_names)
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            targets={n: keras.saving.serialize_keras_object(m) for n, m in self.targets.items()},
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            wiener_iterations=self.wiener_iterations,
            pad_mode=self.pad_mode,
            stft_method=self.stft_method,
            residual=self.residual,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Separator":
        config = dict(config)
        config["targets"] = {n: keras.saving.deserialize_keras_object(m) for n, m in config["targets"].items()}
        return cls(**config)


def _load_one(path: str) -> list[tuple[str | None, keras.Model]]:
    """(target name or None, model) pairs from a ``.keras`` file or a training run directory."""
    if os.path.isdir(path):
        model_path = os.path.join(path, "model.keras")
        config_path = os.path.join(path, "config.json")
        if not os.path.isfile(model_path):
            raise FileNotFoundError(model_path)
        target = None
        if os.path.isfile(config_path):
            try:
                with open(config_path) as fh:
                    config = json.load(fh)
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"{config_path}: not valid JSON ({err})") from err
            if not isinstance(config, dict):
                raise ValueError(f"{config_path}: expected a JSON object")
            target = config.get("target")
        loaded = _load_one(model_path)
        return [(target or name, model) for name, model in loaded]
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: expected a .keras file or a training run directory holding model.keras")
    model = load_keras_file(path)
    if isinstance(model, Separator):
        return list(model.targets.items())
    if not isinstance(model, (IASS, OpenUnmix)):
        raise ValueError(f"{path}: holds a {type(model).__name__}, expected an IASS or OpenUnmix model")
    return [(model.target, model)]


def load_separator(
    paths: Sequence[str],
    targets: Sequence[str] | None = None,
    wiener_iterations: int = 0,
    activity_threshold: float | None = None,
    median_frames: int | None = None,
    n_fft: int | None = None,
    hop_length: int | None = None,
    stft_method: str = "dft",
    residual: str | None = None,
) -> Separator:
    """Build a :class:`Separator` from ``.keras`` files / run directories (or saved Separators).
    ``residual``: also output the mixture minus every target's estimate under that name.

    Target names come from each run's ``config.json`` ("target") or the model's own ``target``.
    ``targets``: if every model is unnamed and the counts match, names assigned in order; otherwise
    the subset to keep (each must be provided by some model). ``activity_threshold`` and
    ``median_frames`` override the IASS inference settings. ``stft_method="fft"`` for fast
    in-process separation; keep "dft" for anything exported to ONNX. The STFT settings come from
    the models' configs; ``n_fft``/``hop_length``, if given, must agree with them.
    """
    if not paths:
        raise ValueError("no model given")
    if activity_threshold is not None and not 0.0 < activity_threshold < 1.0:
        raise ValueError(f"activity_threshold must be in (0, 1), got {activity_threshold}")
    if median_frames is not None and (median_frames < 1 or median_frames % 2 == 0):
        raise ValueError(f"median_frames must be a positive odd number, got {median_frames}")
    loaded = [pair for path in paths for pair in _load_one(os.fspath(path))]
    wanted = list(targets) if targets else None
    if any(name is None for name, _ in loaded):
        if wanted is None or len(wanted) != len(loaded):
            raise ValueError(
                "some models do not name their target (no config.json 'target' and no model.target); "
                f"pass one target name per model ({len(loaded)} in total)"
            )
        loaded = [(name or wanted[i], model) for i, (name, model) in enumerate(loaded)]
    chosen: dict[str, keras.Model] = {}
    for name, model in loaded:
        if name in chosen:
            raise ValueError(f"two models separate {name!r}; give each target once")
        chosen[name] = model
    if wanted is not None:
        missing = [t for t in wanted if t not in chosen]
        if missing:
            raise ValueError(f"no model for target(s) {', '.join(missing)}; models provide {', '.join(chosen)}")
        chosen = {t: chosen[t] for t in wanted}
    for model in chosen.values():
        if isinstance(model, IASS):
            if activity_threshold is not None:
                model.activity_threshold = float(activity_threshold)
            if median_frames is not None:
                model.median_frames = int(median_frames)
    return Separator(chosen, n_fft=n_fft, hop_length=hop_length, wiener_iterations=wiener_iterations,
                     stft_method=stft_method, residual=residual)
