"""The one definition of tfmusic's audio settings: sample rate and STFT framing.

Every model carries the settings it was trained with in its config (``sample_rate``, ``n_fft``,
``hop_length``; ``n_bins = n_fft // 2 + 1``), as open-unmix's ``separator.json`` does, and every
consumer (separator, chunk driver, evaluation, export, activity labels) reads them from the model
or from here, never from a constant of its own. A model and a dataset that disagree are refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SAMPLE_RATE = 44_100
N_FFT = 4096
HOP_LENGTH = 1024


@dataclass(frozen=True)
class AudioSettings:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.n_fft < 2 or not 0 < self.hop_length <= self.n_fft:
            raise ValueError(f"invalid audio settings: {self}")

    @property
    def hop(self) -> int:
        return self.hop_length

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.sample_rate} Hz, n_fft {self.n_fft}, hop {self.hop_length}"


DEFAULT = AudioSettings()


def settings_of(obj: Any) -> AudioSettings:
    """The settings an object carries as attributes (a model, a Separator); defaults where absent."""
    return AudioSettings(int(getattr(obj, "sample_rate", SAMPLE_RATE)), int(getattr(obj, "n_fft", N_FFT)),
                         int(getattr(obj, "hop_length", HOP_LENGTH)))


def check_same(expected: AudioSettings, got: AudioSettings, what: str) -> None:
    """Raise ValueError naming both sides when two parts of a pipeline disagree on the settings."""
    if expected != got:
        raise ValueError(f"{what}: audio settings differ ({got.describe()} vs {expected.describe()}); "
                         f"a model only works on audio framed the way it was trained")
