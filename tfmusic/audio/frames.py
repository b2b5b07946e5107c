"""STFT frame counting, kept free of keras/TF so numpy-only code (Beam DoFns, activity labels) can use it.

``tfmusic.audio.stft`` re-exports :func:`num_frames`; this is its one implementation.
"""

from __future__ import annotations

from tfmusic.audio.settings import HOP_LENGTH, N_FFT

__all__ = ["num_frames"]


def num_frames(samples: int, n_fft: int = N_FFT, hop: int = HOP_LENGTH, center: bool = False) -> int:
    """Number of STFT frames for ``samples`` samples (0 if the signal is shorter than one frame)."""
    if center:
        return 1 + samples // hop
    if samples < n_fft:
        return 0
    return 1 + (samples - n_fft) // hop
