"""Hostile audio (tests/_fuzz_audio.py) into `tfmusic separate`, `data preprocess` and `evaluate`.

Every bad file gets one clear line naming it; the good files of the same batch are still
processed and counted. `separate` and `evaluate` then exit 2; `data preprocess` rejects bad
songs into rejects.jsonl and its counts (a dataset job that rejected songs has done its job, exit 0).
"""
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow")
import keras  # noqa: E402

from tests._fuzz_audio import write_corpus, write_good  # noqa: E402
from tests._reliability_worker import log_faults  # noqa: E402
from tfmusic.cli.main import main  # noqa: E402

FAILS_TO_READ = {"garbage", "huge_header", "empty", "zero_frames", "nan", "inf", "eight_channels"}


def test_separate_names_each_bad_file_and_keeps_the_rest(tmp_path, capsys):
    from tfmusic.models.openunmix import OpenUnmix

    keras.utils.set_random_seed(0)
    model = tmp_path / "umx.keras"
    OpenUnmix(hidden_size=8, nb_layers=1, target="vocals").build_for_frames().save(model)
    files = write_corpus(tmp_path / "in")
    files["good"] = write_good(tmp_path / "in" / "good.wav")
    out = tmp_path / "out"
    code = main(["separate", *map(str, files.values()), "--model", str(model), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    for kind, path in files.items():
        named = [line for line in lines if str(path) in line]
        if kind in FAILS_TO_READ:
            assert len(named) == 1 and named[0].startswith("tfmusic separate: error: "), (kind, err)
            assert not (out / kind).exists()
        else:  # readable: separated (resampled, 8-bit, one sample, or what a torn file still holds)
            assert not named, (kind, err)
            stem, rate = __import__("soundfile").read(out / kind / "vocals.wav")
            assert rate == 44100 and np.isfinite(stem).all()
    n_bad = len(FAILS_TO_READ)
    assert lines[-1].startswith(f"tfmusic separate: error: {n_bad} of {len(files)} song(s) could not be separated")
    assert not list(out.rglob(".*.partial.wav"))
    log_faults("tfmusic separate, hostile file among good ones", sorted(k for k in files if k != "good"))


def test_preprocess_rejects_then_evaluate_names_the_file(tmp_path, capsys):
    raw = tmp_path / "raw"
    corpus = write_corpus(tmp_path / "corpus", seconds=2.0)  # as long as the good stems: each check is reached
    songs = ["good0", "good1", "victim_garbage", "victim_nan"] + [f"bad_{k}" for k in corpus]
    for i, name in enumerate(songs):
        write_good(raw / name / "drums.wav", 2.0, seed=40 + i)
        if name.startswith("bad_"):
            shutil.copy(corpus[name[4:]], raw / name / "vocals.wav")
        else:
            write_good(raw / name / "vocals.wav", 2.0, seed=i)
    data = tmp_path / "stems"
    assert main(["data", "preprocess", "--input", str(raw), "--layout", "folder", "--out", str(data),
                 "--splits", "0,0,1", "--segment-seconds", "1", "--quiet"]) == 0
    capsys.readouterr()
    manifest = json.loads((data / "manifest.json").read_text())
    rejects = [json.loads(line) for line in (data / "rejects.jsonl").read_text().splitlines()]
    counts = manifest["counts"]["songs"]
    assert counts["in"] == len(songs) == counts["written"] + counts["rejected"]
    rejected = {r["song_id"]: r for r in rejects}
    # int8 (8-bit PCM) is valid audio; every other hostile stem rejects its song, naming the file/stems
    assert set(rejected) == {f"bad_{k}" for k in corpus} - {"bad_int8"}, rejects
    for song, record in rejected.items():
        assert "vocals.wav" in record["file"] + record["reason"], record
    assert "NaN/Inf" in rejected["bad_nan"]["reason"] and "NaN/Inf" in rejected["bad_inf"]["reason"]

    # the songs were fine when preprocessed; now two of their stems are hostile: evaluate reads the raw files
    shutil.copy(corpus["garbage"], raw / "victim_garbage" / "vocals.wav")
    shutil.copy(corpus["nan"], raw / "victim_nan" / "vocals.wav")
    out = tmp_path / "eval"
    code = main(["evaluate", "--data", str(data), "--targets", "vocals", "--oracles", "mix", "--out", str(out),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    for victim in ("victim_garbage", "victim_nan"):
        named = [line for line in err.splitlines() if str(raw / victim / "vocals.wav") in line]
        assert len(named) == 1 and named[0].startswith(f"tfmusic evaluate: error: song {victim}: "), err
    # rejected songs are not evaluated (they are in no split's data); bad_int8, good0, good1 are scored
    assert "2 of 5 song(s) could not be evaluated" in err
    evaluated = json.loads((out / "manifest.json").read_text())["counts"]
    assert evaluated["in"] == 5 and evaluated["out"] == 3 and evaluated["failed"] == 2
    log_faults("tfmusic data preprocess, hostile stem (song rejected, named)", sorted(corpus))
    log_faults("tfmusic evaluate, stem turned hostile after preprocessing", ["garbage", "nan"])
