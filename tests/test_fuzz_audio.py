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
from tests._reliability_worker import fault_log  # noqa: E402
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
    hostile = sorted(k for k in files if k != "good")
    with fault_log("tfmusic separate, hostile file among good ones", hostile) as record:
        code = main(["separate", *map(str, files.values()), "--model", str(model), "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()

        def handled(kind: str) -> bool:
            """Unreadable: one line naming it, no output; readable: separated, finite, at the song's own
            rate (stems keep it), not named."""
            named = [line for line in lines if str(files[kind]) in line]
            if kind in FAILS_TO_READ:
                return (len(named) == 1 and named[0].startswith("tfmusic separate: error: ")
                        and not (out / kind).exists())
            stem_path = out / kind / "vocals.wav"
            if named or not stem_path.is_file():
                return False
            soundfile = __import__("soundfile")
            stem, rate = soundfile.read(stem_path)
            return rate == soundfile.info(str(files[kind])).samplerate and bool(np.isfinite(stem).all())

        outcome = {kind: handled(kind) for kind in files}
        record.survived(*(k for k in hostile if outcome[k]))
        record.lost = sum(not ok for ok in outcome.values())  # a good or readable song not separated, or bad output
        assert code == 2 and "Traceback" not in err
        assert all(outcome.values()), (outcome, err)
        n_bad = len(FAILS_TO_READ)
        assert lines[-1].startswith(f"tfmusic separate: error: {n_bad} of {len(files)} song(s) could not be separated")
        assert not list(out.rglob(".*.partial.wav"))


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
    kept = {"good0", "good1", "victim_garbage", "victim_nan", "bad_int8"}  # int8 (8-bit PCM) is valid audio
    with fault_log("tfmusic data preprocess, hostile stem (song rejected, named)", sorted(corpus)) as record:
        code = main(["data", "preprocess", "--input", str(raw), "--layout", "folder", "--out", str(data),
                     "--splits", "0,0,1", "--segment-seconds", "1", "--quiet"])
        capsys.readouterr()
        manifest = json.loads((data / "manifest.json").read_text())
        rejects = [json.loads(line) for line in (data / "rejects.jsonl").read_text().splitlines()]
        rejected = {r["song_id"]: r for r in rejects}
        written = {s for s, info in manifest["songs"].items() if info["status"] == "written"}

        def handled(kind: str) -> bool:
            """Valid audio is written; every other hostile stem rejects its song, naming the file."""
            song = f"bad_{kind}"
            if song in kept:
                return song in written
            return song in rejected and "vocals.wav" in rejected[song]["file"] + rejected[song]["reason"]

        record.survived(*(k for k in corpus if handled(k)))
        record.lost = len(kept - written)  # songs with good audio that did not make it into the dataset
        assert code == 0
        counts = manifest["counts"]["songs"]
        assert counts["in"] == len(songs) == counts["written"] + counts["rejected"]
        assert set(rejected) == {f"bad_{k}" for k in corpus} - {"bad_int8"}, rejects
        for song, reject in rejected.items():
            assert "vocals.wav" in reject["file"] + reject["reason"], reject
        assert "NaN/Inf" in rejected["bad_nan"]["reason"] and "NaN/Inf" in rejected["bad_inf"]["reason"]

    # the songs were fine when preprocessed; now two of their stems are hostile: evaluate reads the raw files
    shutil.copy(corpus["garbage"], raw / "victim_garbage" / "vocals.wav")
    shutil.copy(corpus["nan"], raw / "victim_nan" / "vocals.wav")
    out = tmp_path / "eval"
    with fault_log("tfmusic evaluate, stem turned hostile after preprocessing", ["garbage", "nan"]) as record:
        code = main(["evaluate", "--data", str(data), "--targets", "vocals", "--oracles", "mix", "--out", str(out),
                     "--quiet"])
        err = capsys.readouterr().err
        named = {kind: [line for line in err.splitlines() if str(raw / f"victim_{kind}" / "vocals.wav") in line]
                 for kind in ("garbage", "nan")}
        record.survived(*(k for k, lines in named.items()
                          if len(lines) == 1 and lines[0].startswith(f"tfmusic evaluate: error: song victim_{k}: ")))
        evaluated = json.loads((out / "manifest.json").read_text())
        # rejected songs are not evaluated (they are in no split's data); bad_int8, good0, good1 are scored
        record.lost = len({"bad_int8", "good0", "good1"} - set(evaluated["tracks"]))
        assert code == 2 and "Traceback" not in err
        for kind, lines in named.items():
            assert len(lines) == 1 and lines[0].startswith(f"tfmusic evaluate: error: song victim_{kind}: "), err
        assert "2 of 5 song(s) could not be evaluated" in err
        counts = evaluated["counts"]
        assert counts["in"] == 5 and counts["out"] == 3 and counts["failed"] == 2
