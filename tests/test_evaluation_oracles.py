"""Oracle baselines (IBM, IRM, input-SDR) through tfmusic's one STFT, and the per-track JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfmusic.evaluation import metrics, oracles, results, scoring

SR = 44100


@pytest.fixture(scope="module")
def song() -> scoring.TrackAudio:
    """2 s mono (BSS Eval cost grows with channels^3): a harmonic 'piano', a noisy 'drums' that is
    silent in its second half."""
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    piano = np.stack([0.5 * np.sin(2 * np.pi * 330 * t) + 0.2 * np.sin(2 * np.pi * 990 * t)])
    drums = 0.3 * rng.standard_normal((1, t.size)) * (np.sin(2 * np.pi * 4 * t) > 0)
    drums[:, SR:] = 0.0
    labels = {"drums": np.r_[np.ones(40), np.zeros(43)], "piano": np.ones(83)}
    return scoring.TrackAudio("song 1", (piano + drums).astype(np.float32),
                          {"piano": piano.astype(np.float32), "drums": drums.astype(np.float32)},
                          activity_labels=labels)


@pytest.fixture(scope="module")
def transforms():
    return oracles.stft_pair()


def test_oracle_masks_bound_a_degraded_estimate(song, transforms):
    piano = song.references["piano"]
    ibm = oracles.oracle_estimate(song.mixture, piano, "ibm", transforms)
    irm = oracles.oracle_estimate(song.mixture, piano, "irm", transforms)
    assert ibm.shape == piano.shape and irm.shape == piano.shape
    rest = song.mixture - piano
    degraded = piano + 0.5 * rest  # half of the interference left in
    s_ibm = metrics.bss_eval_target(piano, ibm, rest)
    s_irm = metrics.bss_eval_target(piano, irm, rest)
    s_bad = metrics.bss_eval_target(piano, degraded, rest)
    s_mix = metrics.bss_eval_target(piano, oracles.oracle_estimate(song.mixture, piano, "mix"), rest)
    med = {k: np.nanmedian(v["SDR"]) for k, v in
           {"ibm": s_ibm, "irm": s_irm, "bad": s_bad, "mix": s_mix}.items()}
    assert med["ibm"] > med["bad"] > med["mix"]
    assert med["irm"] > med["bad"]


def test_irm_of_a_lone_source_reconstructs_it(song, transforms):
    """With no interference the ratio mask is 1 and STFT->iSTFT must give the signal back."""
    piano = song.references["piano"]
    est = oracles.oracle_estimate(piano, piano, "irm", transforms)
    assert np.max(np.abs(est - piano)) < 1e-3


def test_evaluate_oracles_json_matches_museval_schema(song, transforms, tmp_path):
    import jsonschema

    metrics.museval_metrics()
    import museval
    from museval.aggregate import EvalStore, json2df

    docs = oracles.evaluate_oracles(song, ["piano", "drums"], ["ibm", "mix"], transforms=transforms)
    assert set(docs) == {"IBM", "input-SDR"}
    schema = json.loads((Path(museval.__file__).parent / "musdb.schema.json").read_text())
    for doc in docs.values():
        path = Path(results.write_track_json(doc, tmp_path, "test"))
        assert path == tmp_path / doc["method"] / "test" / "song_1.json"
        loaded = json.loads(path.read_text())
        jsonschema.validate(loaded, schema)
        assert [t["name"] for t in loaded["targets"]] == ["piano", "drums"]
        frame = loaded["targets"][0]["frames"][1]
        assert frame["time"] == 1.0 and frame["duration"] == 1.0
        assert set(frame["metrics"]) == set(metrics.METRICS)
        assert len(json2df(loaded, "song_1")) == 2 * 2 * 4  # targets x frames x museval metrics
    # drums are silent in the second window: museval's NaN rule
    assert np.isnan(docs["IBM"]["targets"][1]["frames"][1]["metrics"]["SDR"])
    # museval's own aggregation of our files equals ours
    store = EvalStore()
    store.add_eval_dir(tmp_path / "IBM")
    theirs = store.agg_frames_tracks_scores()
    summary = results.write_summary(tmp_path)
    for target in ("piano", "drums"):
        assert summary["bss"]["IBM"][target]["SDR"] == pytest.approx(theirs[(target, "SDR")], abs=1e-4)
    assert summary["bss"]["IBM"]["piano"]["SDR"] > summary["bss"]["input-SDR"]["piano"]["SDR"]
    table = (tmp_path / "summary.md").read_text()
    assert "| piano | IBM |" in table and "| piano | input-SDR |" in table
    assert table.index("| piano | IBM |") < table.index("| piano | input-SDR |")


def test_activity_is_scored_against_labels(song):
    probs = {"drums": np.r_[np.full(42, 0.9), np.full(41, 0.1)]}
    doc = scoring.evaluate_estimates(song, {}, method="IASS", activity=probs)
    act = doc["activity"]["drums"]
    assert act["recall"] == 1.0 and act["precision"] == pytest.approx(40 / 42)
    # the two silent frames predicted at 0.9 tie with all 40 active ones: 40 half-pairs lost
    assert act["auc"] == pytest.approx(1 - 2 * 40 * 0.5 / (40 * 43)) and len(act["probability"]) == 83
    with pytest.raises(ValueError, match="activity frames"):
        scoring.evaluate_estimates(song, {}, method="IASS", activity={"drums": np.zeros(60)})
