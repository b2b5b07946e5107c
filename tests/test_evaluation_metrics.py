"""BSS Eval / SI-SDR / activity metrics on constructed cases, and agreement with museval/mir_eval."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from tfmusic.evaluation import bss_v4, metrics, results, scoring

SR = 44100


def _sources(seconds: float = 2.0, channels: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A harmonic 'target' and a noisy 'rest', shaped (C, S)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate((220, 440, 660), 1))
    target = np.stack([tone * (0.5 + 0.2 * c) for c in range(channels)])
    rest = 0.3 * rng.standard_normal((channels, t.size))
    return target, rest


def test_perfect_estimate_scores_very_high():
    target, rest = _sources()
    out = metrics.bss_eval_target(target, target.copy(), rest)
    assert out["SDR"].shape == (2,)
    assert np.all(out["SDR"] > 100) and np.all(out["SI-SDR"] > 100)
    assert np.all(np.isfinite(out["SDR"]))  # +inf is clipped to MAX_DB, not dropped


def test_noisy_estimate_finite_and_ordered():
    target, rest = _sources(channels=1)
    rng = np.random.default_rng(1)
    good = target + 0.05 * rng.standard_normal(target.shape)
    bad = target + 0.5 * rng.standard_normal(target.shape)
    g = metrics.bss_eval_target(target, good, rest)
    b = metrics.bss_eval_target(target, bad, rest)
    for m in ("SDR", "SAR", "SI-SDR"):
        assert np.all(g[m] > b[m] + 5), m


def test_scaled_estimate_keeps_si_sdr():
    target, rest = _sources(channels=1, seed=2)
    rng = np.random.default_rng(3)
    est = target + 0.2 * rest + 0.05 * rng.standard_normal(target.shape)
    a = metrics.bss_eval_target(target, est, rest)
    b = metrics.bss_eval_target(target, 0.25 * est, rest)
    np.testing.assert_allclose(a["SI-SDR"], b["SI-SDR"], atol=1e-9)
    assert metrics.si_sdr(target, 3.0 * target) > 100
    assert math.isclose(metrics.si_sdr(target, est), metrics.si_sdr(target, -7 * est), abs_tol=1e-9)


def test_swapped_sources_give_low_sir():
    target, rest = _sources(channels=1, seed=4)
    right = metrics.bss_eval_target(target, target + 0.1 * rest, rest)
    swapped = metrics.bss_eval_target(target, rest + 0.1 * target, rest)
    assert np.all(right["SIR"] > 15)
    assert np.all(swapped["SIR"] < 0)
    assert np.all(swapped["SDR"] < right["SDR"] - 15)


def test_silent_windows_are_nan_and_a_silenced_playing_target_is_scored_at_the_floor():
    target, rest = _sources(seconds=3.0, seed=5)
    target[:, SR:2 * SR] = 0.0  # target silent in the middle second
    est = target + 0.05 * rest
    out = metrics.bss_eval_target(target, est, rest)
    assert np.isfinite(out["SDR"][0]) and np.isfinite(out["SDR"][2])
    assert all(np.isnan(out[m][1]) for m in metrics.METRICS)
    silent = metrics.bss_eval_target(target, np.zeros_like(target), rest)
    floor = bss_v4.SILENT_ESTIMATE_DB
    for m in ("SDR", "ISR", "SI-SDR"):  # frames 0 and 2 play: scored at the floor, frame 1 stays NaN
        np.testing.assert_array_equal(silent[m][[0, 2]], [floor, floor])
        assert np.isnan(silent[m][1])
    assert np.isnan(silent["SIR"]).all() and np.isnan(silent["SAR"]).all()
    with pytest.raises(ValueError, match="silent over the whole signal"):
        metrics.bss_eval_target(np.zeros_like(target), est, rest)


def test_absent_target_is_skipped_and_nan_survives_json(tmp_path):
    target, rest = _sources(seconds=2.0, channels=1, seed=6)
    track = scoring.TrackAudio("song A", target + rest, {"piano": target, "bass": np.zeros_like(target)})
    est = {"piano": np.zeros_like(target), "bass": 0.1 * rest, "drums": rest}
    doc = scoring.evaluate_estimates(track, est, method="m")
    assert [t["name"] for t in doc["targets"]] == ["piano"]
    reasons = {s["name"]: s["reason"] for s in doc["skipped"]}
    assert reasons == {"bass": "silent reference (instrument absent)", "drums": "no reference stem"}
    path = Path(results.write_track_json(doc, tmp_path, "test"))
    back = json.loads(path.read_text())
    frame = back["targets"][0]["frames"][0]["metrics"]
    assert frame["SDR"] == bss_v4.SILENT_ESTIMATE_DB and math.isnan(frame["SIR"])  # NaN survives JSON
    summary = results.aggregate([back])
    row = summary["bss"]["m"]["piano"]
    assert row["SDR"] == bss_v4.SILENT_ESTIMATE_DB and math.isnan(row["SIR"]) and row["tracks"] == 1
    assert row["frames"] == row["silenced"] == 2  # the silenced frames are counted, not dropped
    assert summary["skipped"]["m"] == {"bass": 1, "drums": 1}


def test_v3_matches_mir_eval_bss_eval_sources():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mir_eval.separation
    target, rest = _sources(seconds=2.0, channels=1, seed=7)
    rng = np.random.default_rng(8)
    est = 0.8 * target + 0.15 * rest + 0.02 * rng.standard_normal(target.shape)
    ours = metrics.bss_eval_target(target, est, rest, mode="v3", win=None)
    refs = np.concatenate([target, rest])
    ests = np.concatenate([est, rest + 0.3 * target])  # the second estimate does not affect source 0
    sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(refs, ests, compute_permutation=False)
    np.testing.assert_allclose([ours["SDR"][0], ours["SIR"][0], ours["SAR"][0]],
                               [sdr[0], sir[0], sar[0]], atol=1e-3)
    assert np.isnan(ours["ISR"]).all()
    framed = metrics.bss_eval_target(target, est, rest, mode="v3", win=1.0)
    sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources_framewise(refs, ests, window=SR, hop=SR,
                                                                      compute_permutation=False)
    np.testing.assert_allclose(framed["SDR"], sdr[0], atol=1e-3)
    np.testing.assert_allclose(framed["SAR"], sar[0], atol=1e-3)


def test_v4_sdr_isr_equal_museval_joint_evaluation():
    """Target-vs-rest scoring gives museval's joint SDR/ISR (they depend on the target alone)."""
    metrics.museval_metrics()
    import museval

    rng = np.random.default_rng(9)
    a, rest = _sources(seconds=2.0, channels=1, seed=10)
    b = 0.4 * rng.standard_normal(a.shape)
    c = rest - b
    refs = [a, b, c]
    ests = [a + 0.1 * b + 0.02 * rng.standard_normal(a.shape), b + 0.2 * a, c + 0.1 * a]
    sdr, isr, sir, sar = museval.evaluate([r.T for r in refs], [e.T for e in ests], win=SR, hop=SR)
    ours = metrics.bss_eval_target(a, ests[0], b + c)
    np.testing.assert_allclose(ours["SDR"], sdr[0], atol=1e-4)
    np.testing.assert_allclose(ours["ISR"], isr[0], atol=1e-4)


def test_activity_scores_hand_cases():
    labels = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    probs = np.array([0.1, 0.6, 0.9, 0.4, 0.8, 0.2, 0.7, 0.3])
    s = metrics.activity_scores(probs, labels)
    # predictions >= 0.5: frames 1, 2, 4, 6 -> tp 3 (2, 4, 6), fp 1 (1), fn 1 (3)
    assert s["precision"] == pytest.approx(0.75) and s["recall"] == pytest.approx(0.75)
    assert s["f1"] == pytest.approx(0.75)
    # ranking: positives {0.9, 0.4, 0.8, 0.7}, negatives {0.1, 0.6, 0.2, 0.3}: only (0.4, 0.6) is wrong
    assert s["auc"] == pytest.approx(15 / 16)
    assert s["frames"] == 8 and s["active_frames"] == 4
    assert s["bleed_gated"] == pytest.approx(3 / 4)  # silent frames 0, 1, 5, 7: all but frame 1 gated off
    absent = metrics.activity_scores(np.zeros(5), np.zeros(5))
    assert absent["f1"] == 1.0 and math.isnan(absent["auc"])
    missed = metrics.activity_scores(np.zeros(4), np.ones(4))
    assert math.isnan(missed["bleed_gated"])  # no silent frame to gate
    assert missed["precision"] == 0.0 and missed["recall"] == 0.0 and missed["f1"] == 0.0
    confident = metrics.activity_scores(np.array([0.2, 0.9]), np.array([0.3, 0.7]))  # labels binarized
    assert confident["f1"] == 1.0 and confident["auc"] == 1.0
    with pytest.raises(ValueError, match="label frames"):
        metrics.activity_scores(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="probabilities"):
        metrics.activity_scores(np.array([2.0]), np.array([1.0]))
