"""The evaluation driver (in-process and Beam), manifest counts, the report and the CLI checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfmusic.audio.io import write_audio
from tfmusic.data.stems.track import Track
from tfmusic.evaluation import metrics, pipeline, report

SR = 44100


def _song(root: Path, name: str, seed: int, seconds: float = 1.5) -> Track:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    bass = 0.4 * np.sin(2 * np.pi * (80 + 10 * seed) * t)[None]  # mono keeps museval fast
    drums = 0.2 * rng.standard_normal((1, t.size)) * (np.sin(2 * np.pi * 3 * t) > 0.3)
    folder = root / name
    paths = {"bass": write_audio(folder / "bass.wav", bass), "drums": write_audio(folder / "drums.wav", drums)}
    return Track(name=name, layout="folder", path=str(folder), mixture=None,
                 stems={k: [str(v)] for k, v in paths.items()})


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> list[Track]:
    root = tmp_path_factory.mktemp("songs")
    good = [_song(root, "song_a", 1), _song(root, "song_b", 2)]
    broken = Track(name="song_broken", layout="folder", path=str(root / "gone"), mixture=None,
                   stems={"bass": [str(root / "gone" / "bass.wav")]})
    return good + [broken]


@pytest.fixture(scope="module")
def evaluated(songs, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    config = pipeline.EvaluationConfig(oracles=["ibm", "mix"], targets=["bass", "drums"])
    manifest = pipeline.evaluate_dataset(songs, config, out, "test", progress=False)
    return out, manifest


def test_in_process_counts_files_and_summary(evaluated):
    out, manifest = evaluated
    assert manifest["counts"] == {"in": 3, "out": 2, "failed": 1}
    (failure,) = manifest["failed"]
    assert failure["track"] == "song_broken" and "bass.wav" in failure["reason"]
    for method in ("IBM", "input-SDR"):
        assert sorted(p.name for p in (out / method / "test").iterdir()) == ["song_a.json", "song_b.json"]
    summary = json.loads((out / "summary.json").read_text())
    for target in ("bass", "drums"):
        assert summary["bss"]["IBM"][target]["SDR"] > summary["bss"]["input-SDR"][target]["SDR"]
        assert summary["bss"]["IBM"][target]["tracks"] == 2
    assert json.loads((out / "manifest.json").read_text())["counts"]["failed"] == 1


def test_beam_path_matches_in_process(songs, evaluated, tmp_path):
    out, _ = evaluated
    config = pipeline.EvaluationConfig(oracles=["mix"], targets=["bass"])
    manifest = pipeline.evaluate_dataset(songs, config, tmp_path, "test", beam=True)
    assert manifest["counts"] == {"in": 3, "out": 2, "failed": 1}
    assert manifest["runner"] == "FnApiRunner"
    for song in ("song_a", "song_b"):
        ours = json.loads((tmp_path / "input-SDR" / "test" / f"{song}.json").read_text())
        ref = json.loads((out / "input-SDR" / "test" / f"{song}.json").read_text())
        assert ours["targets"][0]["frames"] == ref["targets"][0]["frames"]


def test_report_writes_markdown_and_figures(evaluated, tmp_path):
    out, _ = evaluated
    written = report.write_report(out, tmp_path)
    names = {Path(p).name for p in written}
    assert {"report.md", "sdr_boxplot.png", "metrics_bars.png"} <= names
    text = (tmp_path / "report.md").read_text()
    assert "| bass | IBM |" in text and "Songs: 2 scored of 3 (1 failed)" in text
    assert (tmp_path / "sdr_boxplot.png").stat().st_size > 5000


def test_claim_rows_and_activity_figure(tmp_path):
    summary = {"bss": {
        "IASS": {"bass": {"SDR": 3.0}}, "UMX": {"bass": {"SDR": 2.0}},
        "IBM": {"bass": {"SDR": 9.0}}, "input-SDR": {"bass": {"SDR": -4.0}}}}
    assert report.pick_baseline(["IASS", "UMX"]) == "UMX"
    (row,) = report.claim_rows(summary, "IASS", "UMX")
    assert row["method_ge_baseline"] and row["above_floor"] and row["below_ceiling"]
    summary["bss"]["UMX"]["bass"]["SDR"] = 10.0
    (row,) = report.claim_rows(summary, "IASS", "UMX")
    assert row["method_ge_baseline"] is False and row["below_ceiling"] is False
    with pytest.raises(ValueError, match="not among"):
        report.pick_baseline(["IASS"], "UMX")
    doc = {"method": "IASS", "track": "s", "activity": {"bass": {
        **metrics.activity_scores(np.linspace(0, 1, 50), np.r_[np.zeros(25), np.ones(25)]),
        **metrics.activity_curve(np.linspace(0, 1, 50), np.r_[np.zeros(25), np.ones(25)])}}}
    path = report.activity_figure(doc, tmp_path / "act.png")
    assert Path(path).stat().st_size > 5000


def test_config_and_cli_errors(tmp_path, capsys):
    from tfmusic.cli.main import main

    with pytest.raises(ValueError, match="nothing to evaluate"):
        pipeline.EvaluationConfig(oracles=["ibm"])
    with pytest.raises(ValueError, match="unknown oracle"):
        pipeline.EvaluationConfig(oracles=["wiener"], targets=["bass"])
    with pytest.raises(FileNotFoundError):
        pipeline.parse_method(f"iass={tmp_path / 'missing_run'}")
    spec = pipeline.parse_method(f"IASS={tmp_path}")
    assert spec.name == "IASS" and spec.paths == (str(tmp_path),)
    assert main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--targets", "bass",
                 "--direct_num_workers=2"]) == 2
    assert "Beam flags need --beam" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--oracles", "ibm"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "no per-track results" in capsys.readouterr().err


def test_model_method_end_to_end(songs, tmp_path):
    """A (tiny, untrained) IASS run goes through load_separator, chunked separation and scoring."""
    from tfmusic.audio.stft import num_frames
    from tfmusic.models.iass import IASS

    model = IASS(nb_channels=1, max_bin=729, target="drums").build_for_frames()
    path = tmp_path / "iass_drums.keras"
    model.save(path)
    config = pipeline.EvaluationConfig(methods=[pipeline.parse_method(str(path))], oracles=[])
    manifest = pipeline.evaluate_dataset(songs[:1], config, tmp_path / "eval", "test", progress=False)
    assert manifest["counts"] == {"in": 1, "out": 1, "failed": 0}
    assert manifest["methods"] == ["iass_drums"]
    doc = json.loads((tmp_path / "eval" / "iass_drums" / "test" / "song_a.json").read_text())
    assert [t["name"] for t in doc["targets"]] == ["drums"]
    act = doc["activity"]["drums"]
    assert len(act["probability"]) == len(act["label"]) == num_frames(int(1.5 * SR), center=False)
    assert all(0.0 <= p <= 1.0 for p in act["probability"])
