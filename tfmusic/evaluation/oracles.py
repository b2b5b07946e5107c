"""Oracle baselines: ideal binary / ratio masks (upper bounds) and the mixture itself (the floor).

Masks are applied through tfmusic's one STFT (:mod:`tfmusic.audio.stft`, imported lazily: the rest
of this module is numpy) and scored by :func:`tfmusic.evaluation.scoring.evaluate_estimates`, the
same code path as the models. Whole songs go through the one chunk driver
(:func:`tfmusic.audio.chunking.separate_waveform`, 10 s crossfaded chunks), so the
STFTs of a 10-minute song never sit in memory at once.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from tfmusic.evaluation.metrics import (
    SAMPLE_RATE,
    as_channels_first,
    fit_length,
    is_silent,
)
from tfmusic.evaluation.results import ORACLE_LABELS, ORACLES
from tfmusic.evaluation.scoring import TrackAudio, evaluate_estimates
from tfmusic.evaluation.signals import DiskSink, spill_folder

__all__ = ["ORACLES", "ORACLE_LABELS", "evaluate_oracles", "oracle_estimate", "stft_pair"]


def stft_pair(center: bool = True, n_fft: int | None = None, hop: int | None = None):
    """tfmusic's STFT/iSTFT pair; the rfft method (same spectra, not ONNX-exportable) for speed.

    ``n_fft``/``hop`` default to the STFT layer's own defaults (tfmusic's audio settings).
    """
    from tfmusic.audio.stft import ISTFT, STFT

    kw: dict[str, Any] = {}
    if n_fft is not None:
        kw["n_fft"] = int(n_fft)
    if hop is not None:
        kw["hop_length"] = int(hop)
    return STFT(center=center, method="fft", **kw), ISTFT(center=center, method="fft", **kw)


def oracle_estimate(mixture: np.ndarray, reference: np.ndarray, kind: str,
                    transforms: tuple[Callable, Callable] | None = None) -> np.ndarray:
    """Oracle estimate of one target from its true reference (an upper bound or the floor).

    ``ibm``: ideal binary mask, 1 where the target magnitude exceeds the rest's
    (rest = mixture - target); ``irm``: ideal ratio mask |S|^2 / (|S|^2 + |R|^2) (the Wiener-like
    power mask, SiSEC's "IRM2", the stronger of the two usual ratio masks); both applied to the
    complex mixture STFT (``transforms``, default :func:`stft_pair`) and inverted. ``mix``: the
    mixture itself (input-SDR). Shapes ``(channels, samples)``.
    """
    mixture = as_channels_first(mixture, "mixture").astype(np.float32)
    reference = as_channels_first(reference, "reference").astype(np.float32)
    if kind == "mix":
        return mixture.copy()
    if kind not in ("ibm", "irm"):
        raise ValueError(f"unknown oracle {kind!r}; expected one of {ORACLES}")
    if mixture.shape != reference.shape:
        raise ValueError(f"oracle: mixture {mixture.shape} and reference {reference.shape} differ")
    stft, istft = transforms or stft_pair()
    re, im = stft(np.stack([mixture, reference]))
    re, im = np.asarray(re), np.asarray(im)
    mag_t = np.hypot(re[1], im[1])
    mag_r = np.hypot(re[0] - re[1], im[0] - im[1])
    if kind == "ibm":
        mask = (mag_t > mag_r).astype(np.float32)
    else:
        pow_t, pow_r = np.square(mag_t), np.square(mag_r)
        mask = (pow_t / np.maximum(pow_t + pow_r, 1e-20)).astype(np.float32)
    out = istft(re[0:1] * mask[None], im[0:1] * mask[None], length=mixture.shape[-1])
    return fit_length(np.asarray(out)[0], mixture.shape[-1])


class _Stacked:
    """Mixture and reference read as one ``(2C, S)`` waveform, slice by slice (no stacked copy)."""

    def __init__(self, mixture: Any, reference: Any) -> None:
        self.parts = (mixture, reference)
        self.shape = (mixture.shape[0] + reference.shape[0], mixture.shape[1])

    def __getitem__(self, index):
        return np.concatenate([np.asarray(p[index], dtype=np.float32) for p in self.parts])


def chunked_oracle(mixture: Any, reference: Any, kind: str,
                   transforms: tuple[Callable, Callable] | None = None,
                   chunk_seconds: float = 10.0, overlap_seconds: float = 1.0,
                   scratch: str | None = None) -> Any:
    """:func:`oracle_estimate` of a whole song, computed in the chunk driver's crossfaded chunks;
    with ``scratch``, streamed to a :class:`~tfmusic.evaluation.signals.DiskSignal` there."""
    from tfmusic.audio.chunking import separate_waveform

    if kind == "mix":  # the mixture itself, not a copy
        return as_channels_first(mixture, "mixture")
    mixture = as_channels_first(mixture, "mixture")
    reference = as_channels_first(reference, "reference")
    if mixture.shape != reference.shape:
        raise ValueError(f"oracle: mixture {mixture.shape} and reference {reference.shape} differ")
    transforms = transforms or stft_pair()
    channels = mixture.shape[0]

    def chunk_fn(piece: np.ndarray) -> dict[str, np.ndarray]:
        return {"estimate": oracle_estimate(piece[:channels], piece[channels:], kind, transforms)}

    sink = DiskSink(scratch, mixture.shape[1]) if scratch else None
    out = separate_waveform(_Stacked(mixture, reference), chunk_fn, settings=transforms[0], sink=sink,
                            chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds)
    return sink.signals()["estimate"] if sink else out["estimate"]


def evaluate_oracles(track: TrackAudio, targets: Iterable[str], oracles: Sequence[str], *,
                     mode: str = "v4", win: float | None = 1.0, hop: float | None = None,
                     sample_rate: int = SAMPLE_RATE,
                     transforms: tuple[Callable, Callable] | None = None) -> dict[str, dict[str, Any]]:
    """Per-track JSON for each oracle baseline (keys: ``ORACLE_LABELS`` values)."""
    targets = list(targets)
    out = {}
    for kind in oracles:
        if kind not in ORACLES:
            raise ValueError(f"unknown oracle {kind!r}; expected some of {ORACLES}")
        if kind != "mix" and transforms is None:
            transforms = stft_pair()
        docs = []
        for target in targets:  # one target's estimate in memory at a time (a long song's is 200 MB)
            ref = track.references.get(target)
            with spill_folder(track.scratch) as folder:
                if ref is None or is_silent(ref):  # skipped by evaluate_estimates; a zero-stride view
                    estimate = np.broadcast_to(np.zeros((1, 1), np.float32), track.mixture.shape)
                else:
                    estimate = chunked_oracle(track.mixture, ref, kind, transforms, scratch=folder)
                docs.append(evaluate_estimates(track, {target: estimate}, method=ORACLE_LABELS[kind], mode=mode,
                                               win=win, hop=hop, sample_rate=sample_rate))
                del estimate
        out[ORACLE_LABELS[kind]] = _merge(docs)
    return out


def _merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's per-target documents of one song as the one document ``evaluate_estimates`` writes."""
    doc = dict(docs[0])
    doc["targets"] = [t for d in docs for t in d["targets"]]
    doc["skipped"] = [s for d in docs for s in d["skipped"]]
    doc["activity"] = {k: v for d in docs for k, v in d["activity"].items()}
    return doc
