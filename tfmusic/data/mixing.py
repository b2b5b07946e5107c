"""Production-like mixing of synthesized stems: EQ, compression, reverb, placement and loudness.

A SoundFont renders dry, evenly-levelled notes; real multitrack stems are filtered, compressed,
sent to reverb, panned and balanced by an engineer, and the mix is brought to a streaming-era
loudness. Each stem here goes through such a chain (Spotify's ``pedalboard``, a maintained JUCE
wrapper), with settings drawn per song and stem from the plan's seed, then is set to an
instrument-typical loudness (ITU-R BS.1770 via ``pyloudnorm``). The effects belong to the stem:
the mixture stays the exact sum of the processed stems, as in MUSDB18 or MedleyDB.

Two styles: ``standard`` (training data) and ``holdout``, a chain whose effects and ranges never
occur in ``standard`` (saturation, chorus, phaser, ladder filtering, large plates, other
balances), for measuring how a model trained on one production style meets another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tfmusic.data.stems import taxonomy as tx

STYLES = ("standard", "holdout", "dry")
MIX_LUFS = (-14.0, -8.0)  # drive of the master bus: integrated loudness before the limiter
PEAK_CEILING = 0.9  # the limited mixture's peak (-0.9 dBFS)
# Instrument loudness (LUFS, before the mix is normalized) and its spread, per style.
BALANCE = {
    "standard": {tx.VOCALS: -17.0, tx.DRUMS: -17.0, tx.BASS: -19.0, tx.ELECTRIC_GUITAR: -21.0,
                 tx.ACOUSTIC_GUITAR: -21.0, tx.PIANO: -21.0, tx.OTHER: -22.0},
    "holdout": {tx.VOCALS: -15.0, tx.DRUMS: -19.0, tx.BASS: -20.0, tx.ELECTRIC_GUITAR: -19.0,
                tx.ACOUSTIC_GUITAR: -22.0, tx.PIANO: -20.0, tx.OTHER: -20.0},
}
BALANCE_SPREAD_DB = 3.0
HIGHPASS_HZ = {tx.VOCALS: (80, 140), tx.DRUMS: (25, 45), tx.BASS: (25, 40), tx.ELECTRIC_GUITAR: (70, 130),
               tx.ACOUSTIC_GUITAR: (60, 110), tx.PIANO: (30, 70), tx.OTHER: (50, 150)}
REVERB_WET = {tx.VOCALS: (0.08, 0.3), tx.DRUMS: (0.02, 0.15), tx.BASS: (0.0, 0.05),
              tx.ELECTRIC_GUITAR: (0.05, 0.25), tx.ACOUSTIC_GUITAR: (0.05, 0.25), tx.PIANO: (0.05, 0.3),
              tx.OTHER: (0.1, 0.35)}
PAN_WIDTH = {tx.VOCALS: 0.15, tx.DRUMS: 0.1, tx.BASS: 0.05, tx.ELECTRIC_GUITAR: 0.8,
             tx.ACOUSTIC_GUITAR: 0.8, tx.PIANO: 0.5, tx.OTHER: 0.7}


@dataclass
class StemChain:
    """The settings of one stem's chain (recorded in the song's metadata)."""

    highpass_hz: float
    eq_bands: list[tuple[float, float, float]]  # (centre Hz, gain dB, Q)
    high_shelf_db: float
    comp_threshold_db: float
    comp_ratio: float
    comp_attack_ms: float
    comp_release_ms: float
    reverb_room: float
    reverb_wet: float
    pan: float
    loudness_lufs: float
    drive_db: float = 0.0  # holdout only
    chorus_mix: float = 0.0  # holdout only
    phaser_mix: float = 0.0  # holdout only
    lowpass_hz: float = 0.0  # holdout only: ladder filter cutoff (0 = off)

    def summary(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def draw_chain(rng: np.random.Generator, instrument: str, style: str) -> StemChain:
    """Chain settings for one stem of ``instrument`` in ``style`` (deterministic given ``rng``)."""
    if style not in STYLES:
        raise ValueError(f"unknown mixing style {style!r}; choose from {', '.join(STYLES)}")
    u = rng.uniform
    hp = float(u(*HIGHPASS_HZ[instrument]))
    bands = [(float(np.exp(u(np.log(150), np.log(6000)))), float(u(-4, 4)), float(u(0.7, 2.0)))
             for _ in range(int(rng.integers(1, 3)))]
    heavy = instrument in (tx.DRUMS, tx.BASS, tx.VOCALS)
    chain = StemChain(
        highpass_hz=hp, eq_bands=bands, high_shelf_db=float(u(-3, 3)),
        comp_threshold_db=float(u(-26, -16) if heavy else u(-22, -12)),
        comp_ratio=float(u(3, 6) if heavy else u(1.5, 3.5)),
        comp_attack_ms=float(u(2, 25)), comp_release_ms=float(u(60, 250)),
        reverb_room=float(u(0.1, 0.55)), reverb_wet=float(u(*REVERB_WET[instrument])),
        pan=float(u(-1, 1) * PAN_WIDTH[instrument]),
        loudness_lufs=float(BALANCE["holdout" if style == "holdout" else "standard"][instrument]
                            + u(-BALANCE_SPREAD_DB, BALANCE_SPREAD_DB)))
    if style == "holdout":
        chain.reverb_room = float(u(0.7, 0.95))
        chain.reverb_wet = float(min(0.5, chain.reverb_wet * 1.5 + 0.05))
        chain.comp_ratio = float(u(6, 12))
        if instrument in (tx.ELECTRIC_GUITAR, tx.BASS, tx.OTHER) and rng.random() < 0.6:
            chain.drive_db = float(u(6, 18))
        if instrument in (tx.ELECTRIC_GUITAR, tx.PIANO, tx.OTHER, tx.VOCALS) and rng.random() < 0.5:
            chain.chorus_mix = float(u(0.3, 0.6))
        if instrument in (tx.ELECTRIC_GUITAR, tx.OTHER) and rng.random() < 0.3:
            chain.phaser_mix = float(u(0.3, 0.6))
        if rng.random() < 0.4:
            chain.lowpass_hz = float(u(4000, 9000))
    return chain


def _board(chain: StemChain):
    import pedalboard as pb

    plugins = [pb.HighpassFilter(cutoff_frequency_hz=chain.highpass_hz)]
    plugins += [pb.PeakFilter(cutoff_frequency_hz=f, gain_db=g, q=q) for f, g, q in chain.eq_bands]
    plugins.append(pb.HighShelfFilter(cutoff_frequency_hz=8000.0, gain_db=chain.high_shelf_db))
    if chain.drive_db:
        plugins.append(pb.Distortion(drive_db=chain.drive_db))
    if chain.lowpass_hz:
        plugins.append(pb.LadderFilter(mode=pb.LadderFilter.Mode.LPF12, cutoff_hz=chain.lowpass_hz))
    plugins.append(pb.Compressor(threshold_db=chain.comp_threshold_db, ratio=chain.comp_ratio,
                                 attack_ms=chain.comp_attack_ms, release_ms=chain.comp_release_ms))
    if chain.chorus_mix:
        plugins.append(pb.Chorus(mix=chain.chorus_mix))
    if chain.phaser_mix:
        plugins.append(pb.Phaser(mix=chain.phaser_mix))
    if chain.reverb_wet > 0:
        plugins.append(pb.Reverb(room_size=chain.reverb_room, wet_level=chain.reverb_wet,
                                 dry_level=1.0 - 0.5 * chain.reverb_wet, width=1.0))
    return pb.Pedalboard(plugins)


def loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (LUFS, BS.1770 gated) of ``(channels, samples)`` audio; -inf when silent."""
    import pyloudnorm

    if audio.shape[-1] < int(0.4 * sample_rate) or not np.any(audio):
        return float("-inf")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(np.ascontiguousarray(audio.T)))


def process_stem(audio: np.ndarray, sample_rate: int, chain: StemChain) -> np.ndarray:
    """Apply ``chain`` to a dry stereo stem ``(2, samples)``: effects, then pan, then its loudness."""
    if not np.any(audio):
        return audio.astype(np.float32)
    wet = _board(chain)(audio.astype(np.float32), sample_rate, reset=True)
    angle = (chain.pan + 1.0) * np.pi / 4.0  # constant-power pan law
    wet = wet * (np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)[:, None] * np.float32(np.sqrt(2.0)))
    level = loudness(wet, sample_rate)
    if np.isfinite(level):
        wet = wet * np.float32(10 ** ((chain.loudness_lufs - level) / 20))
    return np.nan_to_num(wet.astype(np.float32))


def master_gain(stems: list[np.ndarray], sample_rate: int, target_lufs: float,
                style: str = "standard") -> np.ndarray:
    """The master bus as one gain curve ``(samples,)`` applied to every stem: a drive that brings the
    mixture to ``target_lufs``, then a look-ahead brickwall limiter holding its peak at
    ``PEAK_CEILING``. A limiter is a time-varying gain, so applying its curve to each stem keeps the
    mixture the exact sum of the stems while giving it a mastered crest factor (real masters sit
    8-14 dB peak-to-RMS; an unlimited sum of produced stems ~18 dB)."""
    mix = np.sum(stems, axis=0)
    peak = np.abs(mix).max(axis=0) if mix.size else np.zeros(0)
    if not np.any(peak > 0):
        return np.ones(mix.shape[-1], dtype=np.float32)
    level = loudness(mix, sample_rate)
    drive = 10 ** ((target_lufs - level) / 20) if np.isfinite(level) else 1.0
    release_s = 0.08 if style == "holdout" else 0.2
    return (drive * limiter_curve(peak * drive, sample_rate, release_s=release_s)).astype(np.float32)


def limiter_curve(peak: np.ndarray, sample_rate: int, *, lookahead_s: float = 0.003,
                  release_s: float = 0.2, block: int = 32) -> np.ndarray:
    """Gain ``(samples,)`` <= 1 keeping ``peak * gain <= PEAK_CEILING`` everywhere: the needed gain
    per block of ``block`` samples, a minimum over +-``lookahead_s`` then a moving average of half
    that width (each averaged value is a minimum over a window containing the sample, so the bound
    holds), and a one-pole release so the gain recovers smoothly instead of pumping per peak."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    n = peak.shape[0]
    blocks = -(-n // block)
    padded = np.zeros(blocks * block)
    padded[:n] = peak
    need = np.minimum(1.0, PEAK_CEILING / np.maximum(padded.reshape(blocks, block).max(axis=1), 1e-12))
    width = max(1, int(round(lookahead_s * sample_rate / block)))
    held = minimum_filter1d(need, size=2 * width + 1, mode="nearest")
    smooth = np.minimum(uniform_filter1d(held, size=width, mode="nearest"), need)
    coef = np.exp(-block / (release_s * sample_rate))
    out = np.empty_like(smooth)
    g = 1.0
    for i, target in enumerate(smooth):  # attack: at once; release: one-pole towards the target
        g = target if target < g else target + coef * (g - target)
        out[i] = g
    return np.repeat(out, block)[:n]
