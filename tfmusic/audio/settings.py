"""The one definition of tfmusic's audio settings: sample rate and STFT framing.

Every model carries the settings it was trained with in its config (``sample_rate``, ``n_fft``,
``hop_length``; ``n_bins = n_fft // 2 + 1``), as open-unmix's ``separator.json`` does, and every
consumer (separator, chunk driver, evaluation, export, activity labels) reads them from the model
or from here, never from a constant of its own. A model and a dataset that disagree are refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from collections.abc import Mapping
from numbers import Integral
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


def _lookup(source: Any, names: tuple[str, ...]) -> int | None:
    """First of ``names`` found on ``source`` as an int attribute, or in its ``config`` mapping."""
    for name in names:
        value = getattr(source, name, None)
        if isinstance(value, Integral) and not isinstance(value, bool):
            return int(value)
    config = getattr(source, "config", None)
    if isinstance(config, Mapping):
        for name in names:
            if isinstance(config.get(name), Integral) and not isinstance(config.get(name), bool):
                return int(config[name])
    return None


def settings_of(source: Any = None) -> AudioSettings:
    """The settings ``source`` carries (a model, a Separator, a chunk function, a settings object):
    attributes ``sample_rate``, ``n_fft``, ``hop_length`` (or ``hop``), or keys of a ``config``
    mapping; each one missing is tfmusic's default, never a hard-coded constant elsewhere."""
    if isinstance(source, AudioSettings):
        return source
    if source is None:
        return DEFAULT
    rate, n_fft = _lookup(source, ("sample_rate",)), _lookup(source, ("n_fft",))
    hop = _lookup(source, ("hop_length", "hop"))
    return AudioSettings(rate or DEFAULT.sample_rate, n_fft or DEFAULT.n_fft, hop or DEFAULT.hop_length)


def check_same(expected: AudioSettings, got: AudioSettings, what: str) -> None:
    """Raise ValueError naming both sides when two parts of a pipeline disagree on the settings."""
    if expected != got:
        raise ValueError(f"{what}: audio settings differ ({got.describe()} vs {expected.describe()}); "
                         f"a model only works on audio framed the way it was trained")
