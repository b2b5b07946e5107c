"""Composed songs, humanized performance and the per-stem production chain of the synthesized set."""

from __future__ import annotations

import numpy as np
import pytest

from tfmusic.data import compose, mixing, synth
from tfmusic.data.stems import taxonomy as tx


def test_every_genre_composes_every_instrument_in_range():
    rng = np.random.default_rng(0)
    for genre in compose.GENRES:
        parts = compose.compose(rng, genre, list(tx.INSTRUMENTS), 12.0, float(np.mean(genre.tempo)))
        assert set(parts) == set(tx.INSTRUMENTS)
        for inst, (role, notes) in parts.items():
            assert notes, (genre.name, inst)
            assert all(0 <= s < e for s, e, _, _ in notes) and all(1 <= v <= 127 for *_, v in notes)
            if inst != tx.DRUMS:
                low, high = compose.RANGES[inst]
                assert all(low <= p <= high for _, _, p, _ in notes), (genre.name, inst)
        assert parts[tx.VOCALS][0] == "lead"


def test_grooves_follow_the_genre_grid():
    """Four-on-the-floor disco puts a kick on every beat; a walking bass plays one note per beat."""
    rng = np.random.default_rng(1)
    disco, jazz = compose.genre_by_name("disco"), compose.genre_by_name("jazz")
    step = 60.0 / 120.0 / 4
    kicks = sorted(s for s, _, p, _ in compose.drums(rng, disco, 4, step) if p == 36)
    assert all(any(abs(k - b * 4 * step) < 1e-9 for k in kicks) for b in range(12))  # bar 4 may be a fill
    walk = compose.bass_line(rng, jazz, compose.harmony(rng, jazz), 4, step)
    assert len(walk) == 16


def test_humanize_swings_offbeats_and_keeps_lengths():
    rng = np.random.default_rng(2)
    step = 0.125
    notes = [(i * step, i * step + 0.1, 60, 80) for i in range(8)]
    played = compose.humanize(notes, rng, step, timing_sd=0.0, swing=0.33, velocity_sd=0.0)
    for (s0, e0, *_), (s1, e1, *_), i in zip(notes, played, range(8)):
        assert e1 - s1 == pytest.approx(e0 - s0)
        assert s1 - s0 == pytest.approx(0.33 * step if i % 2 else 0.0)


def test_plans_draw_genres_soundfonts_and_chains_deterministically():
    plans = [synth.plan_song(3, i, 10.0, soundfonts=3, drum_soundfonts=2) for i in range(24)]
    assert synth.plan_summary(plans[5]) == synth.plan_summary(synth.plan_song(3, 5, 10.0, soundfonts=3,
                                                                               drum_soundfonts=2))
    assert len({p.genre for p in plans}) >= 5 and "chorale" in {p.genre for p in plans}
    assert {p.soundfont for p in plans} == {0, 1, 2} and {p.drum_soundfont for p in plans} == {-1, 0, 1}
    assert all(part.chain is not None for p in plans for part in p.parts)
    dry = synth.plan_song(3, 5, 10.0, mixing_style="dry")
    assert all(part.chain is None for part in dry.parts)


def test_holdout_chain_uses_effects_standard_never_does():
    rng = np.random.default_rng(4)
    standard = [mixing.draw_chain(rng, tx.ELECTRIC_GUITAR, "standard") for _ in range(50)]
    holdout = [mixing.draw_chain(rng, tx.ELECTRIC_GUITAR, "holdout") for _ in range(50)]
    assert not any(c.drive_db or c.chorus_mix or c.phaser_mix or c.lowpass_hz for c in standard)
    assert any(c.drive_db for c in holdout) and any(c.chorus_mix for c in holdout)
    assert max(c.reverb_room for c in standard) < min(c.reverb_room for c in holdout)


def test_process_stem_reaches_its_loudness_and_mix_stays_under_ceiling():
    sr = 22050
    t = np.arange(sr * 3) / sr
    tone = (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    dry = np.stack([tone, tone])
    chain = mixing.draw_chain(np.random.default_rng(5), tx.PIANO, "standard")
    wet = mixing.process_stem(dry, sr, chain)
    assert wet.shape == dry.shape and np.all(np.isfinite(wet))
    assert mixing.loudness(wet, sr) == pytest.approx(chain.loudness_lufs, abs=0.1)
    assert not np.any(mixing.process_stem(np.zeros_like(dry), sr, chain))
    gain = mixing.master_gain([wet, wet], sr, -6.0)
    limited = (wet + wet) * gain
    assert gain.shape == (wet.shape[-1],) and np.abs(limited).max() <= mixing.PEAK_CEILING + 1e-6
    crest = lambda x: 20 * np.log10(np.abs(x).max() / np.sqrt(np.mean(x ** 2)))  # noqa: E731
    hits = np.zeros_like(dry)
    hits[:, :: sr // 4] = 0.8  # drum-like transients over a quiet bed
    hits += 0.02 * np.random.default_rng(0).standard_normal(hits.shape)
    squeezed = hits * mixing.master_gain([hits], sr, -8.0)
    assert crest(squeezed) < crest(hits) - 3.0  # the limiter really squeezes the peaks


def test_limiter_curve_bounds_every_sample_and_recovers():
    sr = 8000
    peak = np.full(sr, 0.5)
    peak[4000] = 3.0  # one spike
    gain = mixing.limiter_curve(peak, sr, release_s=0.05)
    assert np.all(peak * gain <= mixing.PEAK_CEILING + 1e-9) and np.all(gain <= 1.0)
    assert gain[4000] == pytest.approx(mixing.PEAK_CEILING / 3.0)
    assert gain[3000] == 1.0 and gain[-1] > 0.99  # untouched before the look-ahead, recovered after


def test_drum_kit_soundfont_renders_drums_as_program_zero():
    plan = synth.plan_song(0, 1, 6.0, soundfonts=1, drum_soundfonts=1)
    plan.drum_soundfont = 0
    drum = next(p for p in plan.parts if p.is_drum)
    part, font = synth.part_soundfont(plan, drum, [None], ["kit.sf2"])
    assert font == "kit.sf2" and part.program == 0 and part.notes == drum.notes
    other = next(p for p in plan.parts if not p.is_drum)
    assert synth.part_soundfont(plan, other, [None], ["kit.sf2"]) == (other, None)
