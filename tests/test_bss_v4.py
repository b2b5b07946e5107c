"""The chunked BSS Eval v4 against museval's own bss_eval on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

from tfmusic.evaluation import bss_v4
from tfmusic.evaluation.metrics import museval_metrics

SR = 4000


def _signals(seconds: float, seed: int):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR) + 321  # a partial last window, dropped by both
    target, rest = rng.standard_normal((2, n)), rng.standard_normal((2, n))
    kernel = rng.standard_normal(9) / 3  # some filtering, so the distortion filters matter
    estimate = 0.7 * np.stack([np.convolve(c, kernel, "same") for c in target]) + 0.2 * rest
    estimate += 0.05 * rng.standard_normal(estimate.shape)
    return target, rest, estimate


@pytest.mark.parametrize("filters_len,hop", [(16, SR), (64, SR // 2)])
def test_matches_museval_bss_eval(filters_len, hop, monkeypatch):
    """Every window and metric equals museval's (v4 images variant, target row), with chunk
    boundaries inside the signal (a small CHUNK) and overlapping windows."""
    monkeypatch.setattr(bss_v4, "CHUNK", 3001)
    target, rest, estimate = _signals(4.0, seed=filters_len)
    target[:, SR:2 * SR] = 0.0  # a silent target window: NaN in both
    sdr, isr, sir, sar, _ = museval_metrics().bss_eval(
        np.stack([target.T, rest.T]), np.stack([estimate.T, rest.T]), window=SR, hop=hop,
        compute_permutation=False, filters_len=filters_len)
    model = bss_v4.ReferenceModel.build(target, rest, filters_len)
    ours = bss_v4.bss_eval_v4(model, target, rest, estimate, SR, hop)
    for name, want in (("SDR", sdr[0]), ("ISR", isr[0]), ("SIR", sir[0]), ("SAR", sar[0])):
        np.testing.assert_allclose(ours[name], want, rtol=0, atol=1e-6, err_msg=name)
    assert np.isnan(ours["SDR"]).sum() == np.isnan(sdr[0]).sum() > 0


def test_silenced_window_is_floored_and_the_reference_model_is_reusable():
    target, rest, estimate = _signals(3.0, seed=3)
    gated = estimate.copy()
    gated[:, SR:2 * SR] = 0.0
    model = bss_v4.ReferenceModel.build(target, rest, 16)
    plain = bss_v4.bss_eval_v4(model, target, rest, estimate, SR, SR)
    out = bss_v4.bss_eval_v4(model, target, rest, gated, SR, SR)
    assert out["SDR"][1] == out["ISR"][1] == bss_v4.SILENT_ESTIMATE_DB
    assert np.isnan(out["SIR"][1]) and np.isnan(out["SAR"][1])
    assert np.isfinite(plain["SDR"]).all() and np.isfinite(out["SDR"][[0, 2]]).all()
    assert np.median(out["SDR"]) < np.median(plain["SDR"])  # gating a playing target costs


def test_whole_track_shorter_than_a_window():
    target, rest, estimate = _signals(0.5, seed=4)
    sdr, *_ = museval_metrics().bss_eval(np.stack([target.T, rest.T]), np.stack([estimate.T, rest.T]),
                                         window=SR, hop=SR, compute_permutation=False, filters_len=16)
    ours = bss_v4.bss_eval_v4(bss_v4.ReferenceModel.build(target, rest, 16), target, rest, estimate, SR, SR)
    np.testing.assert_allclose(ours["SDR"], sdr[0], atol=1e-6)
