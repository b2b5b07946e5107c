"""Frame-level instrument activity labels: the MedleyDB activation-confidence method (spec A.5).

Labels are one value per STFT frame with ``center=False`` framing (n_fft 4096, hop 1024), so a
6 s excerpt at 44.1 kHz gives 255 labels, the same count as the model's spectrogram frames.
"""

from __future__ import annotations

import numpy as np

from tfmusic.audio.settings import HOP_LENGTH, N_FFT

from tfmusic.audio.frames import num_frames  # center=False framing, re-exported for callers

WIN = N_FFT  # activity frames are the models' STFT frames (tfmusic.audio.settings)
HOP = HOP_LENGTH
LPF_CUTOFF = 0.075  # normalized (Nyquist = 1) cutoff of the 2nd-order Butterworth smoother
THETA = 20.0  # sigmoid slope
OFFSET = 0.15  # sigmoid centre
FLOOR = 0.01  # frames whose normalized channel-sum is below this are silent
THRESHOLD = 0.5  # confidence >= THRESHOLD -> active (training binarization)


def _envelope(channel: np.ndarray) -> np.ndarray:
    """Mean over each 4096-frame (hop 1024) of hann(4096) * sqrt(half-wave-rectified signal).

    Computed block-wise: the signal is cut into 1024-sample blocks, each block is projected on the
    four quarters of the window, and frame f sums quarter k of block f + k (one contiguous pass).
    """
    import scipy.signal

    quarters = WIN // HOP
    padded_len = max(int(np.ceil(len(channel) / WIN)) * WIN, WIN)
    x = np.zeros(padded_len, dtype=np.float32)  # float32 sums: relative error ~1e-7 of the peak
    x[: len(channel)] = channel
    np.maximum(x, 0.0, out=x)
    np.sqrt(x, out=x)
    window = scipy.signal.get_window("hann", WIN, fftbins=False).reshape(quarters, HOP).astype(np.float32)
    proj = (x.reshape(-1, HOP) @ window.T).astype(np.float64)  # (blocks, 4)
    n_frames = 1 + (padded_len - WIN) // HOP
    env = sum(proj[k:k + n_frames, k] for k in range(quarters))
    return env / WIN


def activation_confidence(audio: np.ndarray) -> np.ndarray:
    """Activity confidence in [0, 1] per center=False STFT frame of a ``(channels, samples)`` stem.

    Per channel envelope, normalized as ``n_ch * H / max_t sum_c H``; frames whose normalized
    channel-sum is below 0.01 are zeroed; zero-phase Butterworth low-pass (filtfilt); sigmoid
    ``1 / (1 + exp(-20 (H - 0.15)))``; the first and last frame are dropped. Channels are combined
    with ``max`` (an instrument panned hard to one side is still active). An all-silent stem gives
    zeros; silent frames of a sounding stem get sigmoid(-3) ~ 0.047 (inactive once binarized).
    The result has ``len(padded frames) - 2`` values, which is ``num_frames(samples)`` when the
    length is not a multiple of 4096 (e.g. 6 s -> 255); use :func:`fit_frames` to pin the count.
    """
    import scipy.signal

    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None, :]
    n_ch = audio.shape[0]
    env = np.stack([_envelope(ch) for ch in audio])  # (C, F)
    total = env.sum(axis=0)
    peak = float(total.max()) if total.size else 0.0
    if peak <= 0.0:
        return np.zeros(max(env.shape[1] - 2, 0), dtype=np.float32)
    env = n_ch * env / peak
    env[:, env.sum(axis=0) < FLOOR] = 0.0
    b, a = scipy.signal.butter(2, LPF_CUTOFF, btype="low")
    if env.shape[1] > 3 * max(len(a), len(b)):  # filtfilt needs more frames than its edge padding
        env = scipy.signal.filtfilt(b, a, env, axis=1)
    conf = 1.0 / (1.0 + np.exp(-THETA * (env - OFFSET)))
    conf = conf.max(axis=0)[1:-1]
    return conf.astype(np.float32)


def fit_frames(conf: np.ndarray, frames: int) -> np.ndarray:
    """Trim or edge-pad a confidence curve to exactly ``frames`` values."""
    conf = np.asarray(conf, dtype=np.float32)
    if len(conf) >= frames:
        return conf[:frames]
    if len(conf) == 0:
        return np.zeros(frames, dtype=np.float32)
    return np.concatenate([conf, np.full(frames - len(conf), conf[-1], dtype=np.float32)])


def song_confidence(audio: np.ndarray) -> np.ndarray:
    """Confidence for a whole song, exactly ``num_frames(samples)`` long (frame i starts at i*1024)."""
    return fit_frames(activation_confidence(audio), num_frames(np.asarray(audio).shape[-1]))


def binarize(conf: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Training labels: confidence >= threshold -> 1.0."""
    return (np.asarray(conf) >= threshold).astype(np.float32)
