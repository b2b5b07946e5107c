"""The pitch experiment's pieces (issue 26): basic-pitch's note decoding and frame times as re-implemented
in bench/basic_pitch_onnx.py, scoring any transcriber with our mir_eval functions, and the resume rules
(reuse a run only at this budget; resume one stopped short). The ONNX model itself runs only where
basic-pitch is installed (`make experiment-pitch` installs it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import basic_pitch_onnx as bp  # noqa: E402
import experiment_pitch  # noqa: E402


def test_frame_times_follow_the_windows():
    times = bp.frame_times(300)
    assert times[141] == pytest.approx(141 * 256 / 22050)
    # the first frame of the second window: 36,164 samples after the first window's first kept frame
    assert times[142] == pytest.approx(bp.STEP_SAMPLES / 22050)
    assert np.all(np.diff(times) > 0)


def test_decode_notes_onset_pass_and_melodia_pass():
    note, onset = np.zeros((100, 88)), np.zeros((100, 88))
    note[10:40, 30] = 0.9  # an onset at 10 starts a 30-frame note
    onset[10, 30] = 0.9
    note[50:80, 60] = 0.4  # no onset (its rise, 0.4, stays under 0.5): only the melodia pass finds it
    note[85:90, 5] = 0.9  # 5 frames: too short for either pass
    notes = bp.decode_notes(note, onset)
    assert (10, 40, 30) in notes
    assert any(k == 60 and abs(a - 50) <= 1 and abs(b - 79) <= 1 for a, b, k in notes)
    assert all(k != 5 for _, _, k in notes) and len(notes) == 2
    assert bp.decode_notes(note, onset, melodia=False) == [(10, 40, 30)]


def test_a_perfect_transcription_scores_one():
    from tfmusic.data.stems.pitch import notes_to_roll
    from tfmusic.evaluation.transcription import score_transcription

    notes = [(0.1, 0.6, 40), (0.3, 0.9, 47), (1.0, 1.4, 33)]
    roll = notes_to_roll(notes, 70, 44100, hop=1024, center=True).T
    scores = score_transcription(roll, notes, notes, 44100, 1024)
    assert scores["multipitch"]["f_measure"] == pytest.approx(1.0)
    assert scores["notes"]["f_measure"] == pytest.approx(1.0) and scores["reference_notes"] == 3


def _run(tmp_path: Path, steps: int, checkpoint: int, files=("model.keras",)) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"target": "bass", "trainer": {"steps": steps, "batch_size": 2}}))
    if checkpoint:
        (run / "checkpoints" / f"ckpt-{checkpoint}.index").write_text("")
    for name in files:
        (run / name).write_text("")
    return run


def test_runs_are_reused_only_at_their_budget_and_resumed_when_short(tmp_path):
    want = {"target": "bass", "trainer.steps": 100, "trainer.batch_size": 2}
    assert experiment_pitch.run_state(tmp_path / "none", want, 100, ("model.keras",)) == "new"
    run = _run(tmp_path, 100, 100)
    assert experiment_pitch.run_state(run, want, 100, ("model.keras",)) == "done"
    assert experiment_pitch.run_state(run, want, 100, ("model.keras", "pitch_threshold.json")) == "resume"
    (run / "checkpoints" / "ckpt-100.index").unlink()
    (run / "checkpoints" / "ckpt-50.index").write_text("")
    assert experiment_pitch.run_state(run, want, 100, ("model.keras",)) == "resume"
    with pytest.raises(SystemExit, match="trainer.steps 100 .not 200"):
        experiment_pitch.run_state(run, {**want, "trainer.steps": 200}, 200, ("model.keras",))


def test_a_rerun_stage_replaces_its_record(tmp_path):
    stages = experiment_pitch.Stages(tmp_path / "stages.json")
    stages.add("tfmusic evaluate x", 10.0)
    stages.add("tfmusic train y", 5.0)
    stages.add("tfmusic train y --resume", 3.0)
    stages.add("tfmusic evaluate x", 12.0)
    again = experiment_pitch.Stages(tmp_path / "stages.json")
    assert [(r["command"], r["seconds"]) for r in again.records] == [
        ("tfmusic train y", 5.0), ("tfmusic train y --resume", 3.0), ("tfmusic evaluate x", 12.0)]


def test_basic_pitch_onnx_finds_a_bass_tone():
    try:
        model = bp.BasicPitch()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    sr, seconds, pitch = 44100, 3.0, 40  # E2
    t = np.arange(int(sr * seconds)) / sr
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    audio = 0.2 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5)) * (t > 0.5) * (t < 2.5)
    frames = 1 + len(t) // 1024
    got = bp.transcribe(audio.astype(np.float32), sr, model, np.arange(frames) * 1024 / sr)
    assert got["roll"].shape == (88, frames)
    held = got["roll"][:, int(1.0 * sr / 1024):int(2.0 * sr / 1024)]
    assert held[pitch - 21].all()
    assert any(p == pitch and abs(a - 0.5) < 0.06 for a, _, p in got["notes"])
