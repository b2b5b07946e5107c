"""THE short-time Fourier transform of tfmusic: a fixed windowed-DFT basis in real arithmetic.

Why not ``tf.signal.stft``: complex tensors do not convert to ONNX (tf2onnx only handles an RFFT
that feeds straight into ``ComplexAbs``), they tie a model to TensorFlow, and an in-graph inverse
needs complex ops as well. Here the forward transform is a matrix product of signal blocks with a
constant periodic-Hann windowed cosine/sine basis and the inverse is the transposed basis plus
overlap-add, all with ``keras.ops``; so the same layers run on TF/JAX, inside SavedModels and ONNX.

Conventions (see docs/CONVENTIONS.md): waveforms ``(batch, channels, samples)``, spectra
``(batch, channels, frames, bins)`` with ``bins = n_fft // 2 + 1``. With ``center=False`` frame ``t``
covers samples ``[t * hop, t * hop + n_fft)`` (6 s at 44.1 kHz -> 255 frames, as the activity
labels); with ``center=True`` the signal is padded by ``n_fft // 2`` on both sides first, so frame
``t`` is centred on sample ``t * hop`` and the inverse reconstructs the edges exactly.

Framing: when ``n_fft`` is a multiple of ``hop`` (always, for the project's 4096/1024) the signal is
reshaped into hop-sized blocks and the transform is the sum of ``n_fft // hop`` block-matrix
products with slices of the basis; no overlapping frame tensor is ever built. A strided ``conv1d``
with the same basis (``framing="conv"``, also used for other hop sizes) measured the same speed
within noise on the shared 2-core CPU (``bench/bench_separation_speed.py``, first row).

The basis is rebuilt in-graph from 4096-entry cos/sin tables on each call (a small fraction of the
matmul itself): stored as a constant it would be 67 MB per direction in every traced graph and
SavedModel, and tracing slowed from ~1 s to ~10 s.

``method="fft"`` (an extra, not the default) computes the same spectra with ``keras.ops.rfft`` /
``irfft``: about 20x faster on CPU but not ONNX-convertible. In-process separation (the CLI) uses
it; anything exported keeps the default ``method="dft"``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfmusic.audio.frames import num_frames

__all__ = [
    "ISTFT",
    "STFT",
    "Magnitude",
    "Spectrogram",
    "dft_basis",
    "frame_rate",
    "hann_window",
    "num_frames",
]


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (the DFT-even window used by torch, librosa and tf.signal)."""
    n = np.arange(n_fft, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)


def dft_basis(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed forward basis ``(n_fft, bins)``: X = frame @ cos_basis + 1j * frame @ sin_basis.

    Float64 angles reduced modulo ``n_fft`` keep the basis exact to float32 rounding.
    """
    bins = n_fft // 2 + 1
    n = np.arange(n_fft)[:, None]
    k = np.arange(bins)[None, :]
    angle = 2.0 * np.pi * ((n * k) % n_fft) / n_fft
    window = hann_window(n_fft)[:, None]
    return window * np.cos(angle), -window * np.sin(angle)


def _trig_tables(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin of 2*pi*m/n_fft for m = 0..n_fft-1, from float64 (the only stored constants)."""
    angle = 2.0 * np.pi * np.arange(n_fft) / n_fft
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)


def _phase_index(rows: int, cols: int, n_fft: int):
    """``(r * c) mod n_fft`` as an int32 tensor ``(rows, cols)``: the DFT phase index per entry."""
    r = ops.arange(rows, dtype="int32")[:, None]
    c = ops.arange(cols, dtype="int32")[None, :]
    return ops.mod(r * c, n_fft)


def _forward_basis_tensor(n_fft: int, dtype):
    """``(n_fft, 2 * bins)`` windowed [cos | -sin] basis, built in-graph from 4096-entry tables.

    Built per call rather than stored: a 4096 x 4098 float32 constant is 67 MB, which makes every
    tf.function trace, SavedModel and ONNX file slow and huge; the gather costs a few ms.
    """
    cos_t, sin_t = _trig_tables(n_fft)
    idx = _phase_index(n_fft, n_fft // 2 + 1, n_fft)
    window = ops.convert_to_tensor(hann_window(n_fft).astype(np.float32)[:, None], dtype=dtype)
    cos_b = ops.take(ops.convert_to_tensor(cos_t, dtype=dtype), idx) * window
    sin_b = ops.take(ops.convert_to_tensor(-sin_t, dtype=dtype), idx) * window
    return ops.concatenate([cos_b, sin_b], axis=1)


def _inverse_basis_tensor(n_fft: int, dtype):
    """``(2 * bins, n_fft)`` inverse real-DFT basis times the synthesis window.

    x[n] = 1/N * sum_k c_k (Re X_k cos(2 pi k n / N) - Im X_k sin(2 pi k n / N)), c_k = 1 for DC and
    Nyquist, 2 otherwise; the window makes it a weighted overlap-add.
    """
    bins = n_fft // 2 + 1
    cos_t, sin_t = _trig_tables(n_fft)
    idx = _phase_index(bins, n_fft, n_fft)
    weight = np.full((bins, 1), 2.0 / n_fft)
    weight[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        weight[-1] = 1.0 / n_fft
    scale = ops.convert_to_tensor((weight * hann_window(n_fft)[None, :]).astype(np.float32), dtype=dtype)
    cos_b = ops.take(ops.convert_to_tensor(cos_t, dtype=dtype), idx) * scale
    sin_b = ops.take(ops.convert_to_tensor(-sin_t, dtype=dtype), idx) * scale
    return ops.concatenate([cos_b, sin_b], axis=0)


def _check_config(n_fft: int, hop_length: int, framing: str, pad_mode: str, method: str = "dft") -> None:
    if method not in ("dft", "fft"):
        raise ValueError(f"method must be 'dft' (exportable) or 'fft' (fast, not ONNX-convertible), got {method!r}")
    if method == "fft" and n_fft % hop_length:
        raise ValueError(f"method='fft' needs n_fft ({n_fft}) to be a multiple of hop_length ({hop_length})")
    if n_fft <= 0 or hop_length <= 0 or hop_length > n_fft:
        raise ValueError(f"need 0 < hop_length <= n_fft, got n_fft={n_fft}, hop_length={hop_length}")
    if framing not in ("auto", "blocks", "conv"):
        raise ValueError(f"framing must be 'auto', 'blocks' or 'conv', got {framing!r}")
    if framing == "blocks" and n_fft % hop_length:
        raise ValueError(f"framing='blocks' needs n_fft ({n_fft}) to be a multiple of hop_length ({hop_length})")
    if pad_mode not in ("reflect", "constant"):
        raise ValueError(f"pad_mode must be 'reflect' or 'constant', got {pad_mode!r}")


@keras.saving.register_keras_serializable(package="tfmusic")
class STFT(keras.layers.Layer):
    """Waveform ``(B, C, S)`` -> ``(real, imag)``, each ``(B, C, T, n_fft // 2 + 1)``.

    Matches ``tf.signal.stft(x, n_fft, hop, fft_length=n_fft, window_fn=hann_window)`` (center=False)
    and ``librosa.stft(x, n_fft=n_fft, hop_length=hop, center=True, pad_mode=pad_mode)`` to float32
    precision. ``pad_mode="reflect"`` (torch's and the IASS test code's choice) needs more than
    ``n_fft // 2`` samples.
    """

    def __init__(
        self,
        n_fft: int = 4096,
        hop_length: int = 1024,
        center: bool = False,
        pad_mode: str = "reflect",
        framing: str = "auto",
        method: str = "dft",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        _check_config(n_fft, hop_length, framing, pad_mode, method)
        self.method = method
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.center = bool(center)
        self.pad_mode = pad_mode
        self.framing = framing
        self.n_bins = self.n_fft // 2 + 1

    @property
    def _use_blocks(self) -> bool:
        if self.framing == "auto":
            return self.n_fft % self.hop_length == 0
        return self.framing == "blocks"

    def call(self, waveform):
        x = ops.convert_to_tensor(waveform, dtype=self.compute_dtype)
        if self.center:
            pad = self.n_fft // 2
            length = x.shape[-1]
            if self.pad_mode == "reflect" and length is not None and length <= pad:
                raise ValueError(
                    f"STFT(center=True, pad_mode='reflect') needs more than {pad} samples, got {length}"
                )
            x = ops.pad(x, [[0, 0], [0, 0], [pad, pad]], mode=self.pad_mode)
        batch, channels = ops.shape(x)[0], ops.shape(x)[1]
        flat = ops.reshape(x, (-1, ops.shape(x)[-1]))  # (B*C, S)
        # One (n_fft, 2 * bins) matrix: a single product yields real and imaginary parts.
        if self.method == "fft":
            spec = self._fft(flat)
        elif self._use_blocks:
            spec = self._blocks(flat, _forward_basis_tensor(self.n_fft, x.dtype))
        else:
            spec = self._conv(flat, _forward_basis_tensor(self.n_fft, x.dtype))
        frames = ops.shape(spec)[1]
        spec = ops.reshape(spec, (batch, channels, frames, 2 * self.n_bins))
        return spec[..., : self.n_bins], spec[..., self.n_bins :]

    def _blocks(self, flat, basis):
        hop, ratio = self.hop_length, self.n_fft // self.hop_length
        samples = ops.shape(flat)[1]
        n_blocks = samples // hop
        frames = n_blocks - ratio + 1
        blocks = ops.reshape(flat[:, : n_blocks * hop], (-1, n_blocks, hop))
        spec = None
        for j in range(ratio):
            part = ops.matmul(blocks[:, j : j + frames], basis[j * hop : (j + 1) * hop])
            spec = part if spec is None else spec + part
        return spec

    def _fft(self, flat):
        hop, ratio = self.hop_length, self.n_fft // self.hop_length
        n_blocks = ops.shape(flat)[1] // hop
        frames = n_blocks - ratio + 1
        blocks = ops.reshape(flat[:, : n_blocks * hop], (-1, n_blocks, hop))
        framed = ops.concatenate([blocks[:, j : j + frames] for j in range(ratio)], axis=-1)
        window = ops.convert_to_tensor(hann_window(self.n_fft).astype(np.float32), dtype=flat.dtype)
        real, imag = ops.rfft(framed * window, fft_length=self.n_fft)
        return ops.concatenate([real, imag], axis=-1)

    def _conv(self, flat, basis):
        kernel = ops.expand_dims(basis, 1)  # (n_fft, 1, 2*bins)
        return ops.conv(ops.expand_dims(flat, -1), kernel, strides=self.hop_length, padding="valid")

    def compute_output_shape(self, input_shape):
        batch, channels, samples = input_shape
        frames = None
        if samples is not None:
            frames = num_frames(samples, self.n_fft, self.hop_length, self.center)
        shape = (batch, channels, frames, self.n_bins)
        return shape, shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            center=self.center,
            pad_mode=self.pad_mode,
            framing=self.framing,
            method=self.method,
        )
        return config


@keras.saving.register_keras_serializable(package="tfmusic")
class ISTFT(keras.layers.Layer):
    """``(real, imag)`` spectra ``(B, C, T, bins)`` -> waveform ``(B, C, length)``.

    Weighted overlap-add with the Hann synthesis window, divided by the summed squared window
    (where it is non-zero), so ``ISTFT(STFT(x)) == x`` wherever the frames cover the signal; with
    ``center=True`` that is every sample. ``length`` (call argument) trims or zero-pads the result;
    without it the output has ``(T - 1) * hop + n_fft`` samples minus the centre padding.
    """

    def __init__(self, n_fft: int = 4096, hop_length: int = 1024, center: bool = False, method: str = "dft",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        _check_config(n_fft, hop_length, "auto", "constant", method)
        self.method = method
        if n_fft % hop_length:
            raise ValueError(f"ISTFT needs n_fft ({n_fft}) to be a multiple of hop_length ({hop_length})")
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.center = bool(center)
        self.n_bins = self.n_fft // 2 + 1
        self._window_sq = (hann_window(self.n_fft) ** 2).astype(np.float32)

    def _overlap_add(self, frames):
        """``(N, T, n_fft)`` frames -> ``(N, (T + ratio - 1) * hop)`` signal, no frame copies."""
        hop, ratio = self.hop_length, self.n_fft // self.hop_length
        shape = ops.shape(frames)
        blocks = ops.reshape(frames, (shape[0], shape[1], ratio, hop))
        out = None
        for j in range(ratio):
            part = ops.pad(blocks[:, :, j], [[0, 0], [j, ratio - 1 - j], [0, 0]])
            out = part if out is None else out + part
        return ops.reshape(out, (shape[0], -1))

    def call(self, real, imag, length=None):
        real = ops.convert_to_tensor(real, dtype=self.compute_dtype)
        imag = ops.convert_to_tensor(imag, dtype=self.compute_dtype)
        batch, channels, n_frames = ops.shape(real)[0], ops.shape(real)[1], ops.shape(real)[2]
        dtype = real.dtype
        if self.method == "fft":
            shape = (-1, n_frames, self.n_bins)
            frames = ops.irfft((ops.reshape(real, shape), ops.reshape(imag, shape)), fft_length=self.n_fft)
            frames = frames * ops.convert_to_tensor(hann_window(self.n_fft).astype(np.float32), dtype=dtype)
        else:
            spec = ops.concatenate([real, imag], axis=-1)
            spec = ops.reshape(spec, (-1, n_frames, 2 * self.n_bins))
            frames = ops.matmul(spec, _inverse_basis_tensor(self.n_fft, dtype))
        signal = self._overlap_add(frames)
        window_sq = ops.convert_to_tensor(self._window_sq, dtype=dtype)
        norm = self._overlap_add(ops.ones((1, n_frames, 1), dtype=dtype) * window_sq)
        tiny = 1e-8
        signal = signal / ops.where(norm > tiny, norm, ops.ones_like(norm))
        if self.center:
            signal = signal[:, self.n_fft // 2 :]
        if isinstance(length, (int, np.integer)):
            # Pad by `length` zeros (a static amount, so graphs stay shape-agnostic), then cut.
            signal = ops.pad(signal, [[0, 0], [0, int(length)]])[:, : int(length)]
        elif length is not None:
            # Dynamic length (e.g. a serving signature): cut only; with center=True the overlap-add
            # always covers the original signal, so no padding is needed.
            signal = signal[:, :length]
        elif self.center:
            signal = signal[:, : ops.shape(signal)[1] - self.n_fft // 2]
        return ops.reshape(signal, (batch, channels, -1))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(n_fft=self.n_fft, hop_length=self.hop_length, center=self.center, method=self.method)
        return config


@keras.saving.register_keras_serializable(package="tfmusic")
class Magnitude(keras.layers.Layer):
    """``(real, imag)`` -> magnitude ``sqrt(re^2 + im^2)`` (power 1), optionally averaged over channels.

    ``mono=True`` averages channel magnitudes into one channel, the IASS front end for a mono model.
    The square is floored at 1e-20 so the gradient at silent bins is finite.
    """

    def __init__(self, mono: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mono = bool(mono)

    def call(self, real, imag):
        mag = ops.sqrt(ops.maximum(ops.square(real) + ops.square(imag), 1e-20))
        if self.mono:
            mag = ops.mean(mag, axis=1, keepdims=True)
        return mag

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(mono=self.mono)
        return config


@keras.saving.register_keras_serializable(package="tfmusic")
class Spectrogram(keras.layers.Layer):
    """Waveform ``(B, C, S)`` -> magnitude spectrogram ``(B, C, T, bins)``: STFT then Magnitude."""

    def __init__(
        self,
        n_fft: int = 4096,
        hop_length: int = 1024,
        center: bool = False,
        pad_mode: str = "reflect",
        mono: bool = False,
        method: str = "dft",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.stft = STFT(n_fft, hop_length, center=center, pad_mode=pad_mode, method=method, dtype=self.dtype_policy)
        self.magnitude = Magnitude(mono=mono, dtype=self.dtype_policy)

    def call(self, waveform):
        return self.magnitude(*self.stft(waveform))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            n_fft=self.stft.n_fft,
            hop_length=self.stft.hop_length,
            center=self.stft.center,
            pad_mode=self.stft.pad_mode,
            mono=self.magnitude.mono,
            method=self.stft.method,
        )
        return config


def frame_rate(sample_rate: int = 44100, hop: int = 1024) -> float:
    """Frames per second (43.07 at 44.1 kHz / hop 1024), for plotting frame-wise curves."""
    return sample_rate / hop

