"""bench/experiment_pretrained.py and bench/publish_models.py: budgets, resume decisions, the table, cards."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import experiment_pretrained as exp  # noqa: E402
import publish_models  # noqa: E402


def _summary(iass: float, umx: float, mix: float) -> dict:
    row = lambda v: {"drums": {"SDR": v}}  # noqa: E731
    return {"bss": {"IASS": row(iass), "Open-Unmix": row(umx), "input-SDR": row(mix), "IBM": row(12.0),
                    "IRM": row(11.0)}, "activity": {"IASS": {"drums": {"f1": 0.93}}}}


def _record() -> dict:
    return {"budget": {"songs": 240, "gap_songs": 24, "splits": "0.9,0.05,0.05", "steps": {"iass_drums": 800},
                       "ablation_steps": 300, "train_flags": exp.TRAIN_FLAGS},
            "machine": "2 cores", "load_start": "1", "load_end": "2", "targets": ["drums"],
            "sample_sets": {"train": [{"name": "ForzeeStereo", "package": "hydrogen-drumkits", "license": "GPL-2",
                                       "plays": "drums"}], "gap": []},
            "models": {"iass_drums": {"steps": 800, "train_seconds": 3600.0, "best_eval_loss": 1.5}},
            "in_distribution": _summary(6.0, 5.0, -2.0), "gap": _summary(4.0, 3.0, -5.0),
            "ablation": {"bss": {"input-SDR": {"drums": {"SDR": -5.0}}, "ablation-all": {"drums": {"SDR": 3.0}},
                                 "ablation-none": {"drums": {"SDR": 1.0}}}, "activity": {}},
            "stages": [{"command": "tfmusic train iass", "seconds": 12.0}], "total_seconds": 60.0}


def test_budgets_name_known_models_only():
    assert exp.budgets("iass_drums=10,umx_bass=5") == {"iass_drums": 10, "umx_bass": 5}
    with pytest.raises(SystemExit, match="unknown models"):
        exp.budgets("iass_kazoo=3")


def test_training_time_leaves_out_the_pause_between_sessions():
    curve = [(10, 0.0, 1.0), (20, 30.0, 1.0), (30, 5000.0, 1.0), (40, 5030.0, 1.0)]
    assert exp.training_seconds(curve) == 60.0
    resumed = [(10, 0.0, 1.0), (20, 30.0, 1.0), (30, 60.0, 1.0), (20, 5000.0, 1.0), (30, 5030.0, 1.0)]  # from ckpt-10
    assert exp.training_seconds(sorted(resumed)) == 90.0


def test_train_resumes_a_short_run_and_skips_a_finished_one(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(exp, "run_tfmusic", lambda argv, log: calls.append(argv))
    run = tmp_path / "iass_drums"
    (run / "checkpoints").mkdir(parents=True)
    exp.train(run, "iass", "drums", 100, tmp_path / "stems", [], [])
    assert "--data" in calls[-1] and "--resume" not in calls[-1]
    (run / "config.json").write_text("{}")
    (run / "checkpoints" / "ckpt-50.index").write_text("")
    exp.train(run, "iass", "drums", 100, tmp_path / "stems", [], [])
    assert calls[-1][:5] == ["train", "iass", "--run-dir", str(run), "--resume"]
    (run / "checkpoints" / "ckpt-100.index").write_text("")
    (run / "model.keras").write_text("")
    exp.train(run, "iass", "drums", 100, tmp_path / "stems", [], [])
    assert len(calls) == 2


def test_table_has_both_sets_the_gain_over_the_mixture_and_the_ablation():
    md = exp.to_markdown(_record())
    assert "| drums | 6.00 | 5.00 | -2.00 | 12.00 | 11.00 | +8.00 | 0.93 |" in md
    assert "| drums | 4.00 | 3.00 | -5.00 | 12.00 | 11.00 | +9.00 | 0.93 |" in md
    assert "| all | 3.00 | +8.00 |" in md and "| none | 1.00 | +6.00 |" in md
    assert "ForzeeStereo" in md and "GPL-2" in md


def test_publish_writes_model_card_and_registry(tmp_path):
    from tfmusic.models import pretrained
    from tfmusic.models.iass import IASS

    run = tmp_path / "runs" / "iass_drums"
    run.mkdir(parents=True)
    keras.utils.set_random_seed(0)
    IASS(target="drums").build_for_frames().save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({
        "target": "drums", "segment_seconds": 6.0, "learning_rate": 1e-3, "augmentation": {"eq": 0.5},
        "trainer": {"batch_size": 4, "seed": 42, "keep_model": "final"}}))
    root = tmp_path / "pretrained"
    publish_models.publish_all(_record(), {"iass_drums": run, "umx_drums": run}, tmp_path, root)
    entry = pretrained.info("iass_drums", root)
    assert entry["default"] and entry["steps"] == 800 and entry["scores"]["gap over mixture"] == 9.0
    assert pretrained.residual_target(root) == "other" and "umx_drums" not in pretrained.registry(root)
    card = pretrained.card("iass_drums", root)
    assert "800 steps" in card and "ForzeeStereo" in card and "| gap SDR | 4.0 |" in card
    assert "the final weights" in card
    worse = _record()
    worse["gap"] = _summary(-6.0, 3.0, -5.0)  # below the mixture on unseen songs: not shipped
    other_root = tmp_path / "pretrained2"
    publish_models.publish_all(worse, {"iass_drums": run}, tmp_path, other_root)
    silent = _record()
    silent["gap"] = _summary(0.0, 3.0, -5.0)  # "beats" the mixture by outputting silence: not shipped
    publish_models.publish_all(silent, {"iass_drums": run}, tmp_path, other_root)
    gated_out = _record()
    gated_out["in_distribution"] = _summary(-30.0, 5.0, -2.0)  # its gate silences its own test songs: not shipped
    publish_models.publish_all(gated_out, {"iass_drums": run}, tmp_path, other_root)
    assert pretrained.registry(other_root) == {}
    lower = _record()
    lower["gap"] = _summary(3.5, 3.0, -5.0)  # good, but below the shipped model's 4.0 dB: kept out
    publish_models.publish_all(lower, {"iass_drums": run}, tmp_path, root)
    assert pretrained.info("iass_drums", root)["scores"]["gap SDR"] == 4.0
