"""Measures data: tokenization, vocabulary, extraction rules, the Beam job and the tf.data reader."""
import json

import numpy as np
import pytest

from tfmusic.data import measures as M
from tfmusic.music.attributes import HOLD, REST, grid_attributes


def test_frozen_sorted_vocabulary():
    assert M.VOCABULARY[:5] == ("<pad>", "START", "END", "rest", "__")
    assert M.VOCAB_SIZE == 35
    assert M.VOCABULARY[5:9] == ("G3", "G#3", "A3", "B-3")
    assert M.VOCABULARY[-1] == "C6"
    doc = M.vocabulary_json()
    assert doc["tokens"] == list(M.VOCABULARY) and doc["note_offset"] == 5
    json.dumps(doc)


def test_grid_ids_round_trip():
    grid = np.array([55, HOLD, REST, HOLD, 84, 60] + [HOLD] * 18)
    ids = M.grid_to_ids(grid)
    assert ids[:6].tolist() == [5, 4, 3, 4, 34, 10]
    np.testing.assert_array_equal(M.ids_to_grid(ids), grid)
    assert M.ids_to_tokens(ids[:6]) == ["G3", "__", "rest", "__", "C6", "C4"]
    with pytest.raises(ValueError, match="outside"):
        M.grid_to_ids(np.array([54] + [HOLD] * 23))


def _measure(elements):
    from music21 import stream

    m = stream.Measure()
    for el in elements:
        m.append(el)
    return m


def test_quantize_measure_rules():
    from music21 import chord, duration, note, tie

    def n(name, ql):
        return note.Note(name, quarterLength=ql)

    trip = [note.Note(p, duration=duration.Duration(1 / 3)) for p in ("A4", "B4", "C#5")]
    grid, reason = M.quantize_measure(_measure([*trip, n("D5", 0.5), n("E5", 0.25), n("F#5", 0.25),
                                                note.Rest(quarterLength=1), n("G4", 1)]))
    assert reason is None
    expected = [HOLD] * 24
    for t, v in {0: 69, 2: 71, 4: 73, 6: 74, 9: 76, 11: 78, 12: REST, 18: 67}.items():
        expected[t] = v
    assert grid.tolist() == expected

    tied = n("C5", 1)
    tied.tie = tie.Tie("stop")
    grid, _ = M.quantize_measure(_measure([tied, n("D5", 3)]))
    assert grid[0] == HOLD and grid[6] == 74

    assert M.quantize_measure(_measure([chord.Chord(["C4", "E4"], quarterLength=4)]))[1] == "chord"
    from music21 import stream

    two_voices = stream.Measure([stream.Voice([n("C5", 4)]), stream.Voice([n("E5", 4)])])
    assert M.quantize_measure(two_voices)[1] == "multiple_voices"
    thirty_seconds = [n("C5", 0.125), n("D5", 0.125), n("C5", 3.75)]
    assert M.quantize_measure(_measure(thirty_seconds))[1] == "off_grid"


def test_extract_score_counts_and_range():
    from music21 import meter, note, stream

    part = stream.Part()
    pickup = stream.Measure(number=0)
    pickup.append(meter.TimeSignature("4/4"))
    pickup.append(note.Note("G4", quarterLength=1))
    part.append(pickup)
    for names in (["C5", "D5", "E5", "F5"], ["C3", "C4", "C5", "C6"], ["C7", "B6", "A6", "G6"]):
        m = stream.Measure()
        for name in names:
            m.append(note.Note(name, quarterLength=1))
        part.append(m)
    m = stream.Measure()
    m.append(meter.TimeSignature("3/4"))
    m.append(note.Note("C5", quarterLength=3))
    part.append(m)
    score = stream.Score([part])
    bars, rejected, seen = M.extract_score("oneills1850", "x#0", score)
    assert seen == 5
    assert dict(rejected) == {"incomplete_bar": 1, "out_of_range": 1, "time_signature": 1}
    assert [b.bar_index for b in bars] == [1, 3]
    # C7..G6 (96..91) is shifted down by the smallest amount that fits: 96 -> 84
    assert [v for v in bars[1].grid if v >= 0] == [84, 83, 81, 79]


def test_split_assignment_is_deterministic_and_tune_level():
    tunes = [f"coll/file.abc#{k}" for k in range(400)]
    splits = [[M.assign_split(t, b) for b in range(10)] for t in tunes]
    for per_tune in splits:
        assert ("test" in per_tune) == all(s == "test" for s in per_tune)
    flat = [s for per in splits for s in per]
    frac = {s: flat.count(s) / len(flat) for s in M.SPLITS}
    assert frac["test"] == pytest.approx(0.10, abs=0.04)
    assert frac["train"] == pytest.approx(0.63, abs=0.05)
    assert splits == [[M.assign_split(t, b) for b in range(10)] for t in tunes]
    assert splits != [[M.assign_split(t, b, seed=1) for b in range(10)] for t in tunes]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("measures")
    kwargs = dict(collections=["ryansMammoth", "bach"], max_files=2, progress=False)
    m1 = M.build(root / "a", cache_dir=root / "cache_a", **kwargs)
    m2 = M.build(root / "b", cache_dir=root / "cache_b", **kwargs)   # independent parse
    m3 = M.build(root / "c", cache_dir=root / "cache_a", **kwargs)   # served from the cache
    return root, (m1, m2, m3)


def test_build_manifest_counts(built):
    root, (m, _, _) = built
    assert m["files_in"] == 4 and m["files_failed"] == 0
    assert m["bars_out"] > 40
    assert m["bars_in"] == m["bars_out"] + sum(m["bars_rejected"].values())
    assert sum(m["splits"].values()) == m["bars_out"]
    assert set(m["bars_out_by_collection"]) == {"ryansMammoth", "bach"}
    assert "time_signature" in m["bars_rejected"]
    assert json.loads((root / "a" / "manifest.json").read_text())["bars_out"] == m["bars_out"]
    assert len(list((root / "cache_a").glob("*.json"))) == 4


def test_build_is_deterministic(built):
    root, (m1, m2, m3) = built
    for split in M.SPLITS:
        name = m1["shards"][split]
        data = (root / "a" / name).read_bytes()
        assert data == (root / "b" / name).read_bytes() == (root / "c" / name).read_bytes()
    strip = lambda m: {k: v for k, v in m.items() if k != "wall_seconds"}  # noqa: E731
    assert strip(m1) == strip(m2) == strip(m3)


def test_reader_shapes_attributes_and_transposition(built):
    root, (m, _, _) = built
    data = root / "a"
    arrays = M.read_numpy(data, "train")
    n = m["splits"]["train"]
    assert arrays["tokens"].shape == (n, 24)
    np.testing.assert_array_equal(arrays["tokens"], M.grid_to_ids(arrays["pitches"]))
    np.testing.assert_allclose(arrays["attributes"], grid_attributes(arrays["pitches"]), atol=1e-6)

    plain = list(M.load(data, "train", 8, shuffle=False, transpose=False).as_numpy_iterator())
    tokens, attrs = plain[0]
    assert tokens.dtype == np.int32 and tokens.shape == (8, 24)
    assert attrs.dtype == np.float32 and attrs.shape == (8, 4)
    np.testing.assert_array_equal(np.concatenate([t for t, _ in plain]), arrays["tokens"])

    moved = list(M.load(data, "train", 1000, shuffle=False, transpose=True, seed=3).as_numpy_iterator())[0]
    again = list(M.load(data, "train", 1000, shuffle=False, transpose=True, seed=3).as_numpy_iterator())[0]
    np.testing.assert_array_equal(moved[0], again[0])
    assert moved[0].min() >= M.REST_ID and moved[0].max() < M.VOCAB_SIZE
    assert not np.array_equal(moved[0], arrays["tokens"])
    grid = M.ids_to_grid(moved[0])
    np.testing.assert_allclose(grid_attributes(grid), arrays["attributes"], atol=1e-6)
    # the rhythm (which ticks hold, rest or start a note) never changes under transposition
    np.testing.assert_array_equal(moved[0] < M.NOTE_OFFSET, arrays["tokens"] < M.NOTE_OFFSET)

    shuffled = list(M.load(data, "train", 1000, seed=0).as_numpy_iterator())[0][0]
    assert sorted(map(tuple, M.ids_to_grid(shuffled) >= 0)) == sorted(map(tuple, arrays["pitches"] >= 0))


def test_reader_errors(tmp_path, built):
    with pytest.raises(FileNotFoundError):
        M.load(tmp_path, "train", 4)
    with pytest.raises(ValueError, match="unknown split"):
        M.load(built[0] / "a", "dev", 4)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vocabulary.json").write_text(json.dumps({"tokens": ["x"]}))
    with pytest.raises(ValueError, match="vocabulary differs"):
        M.load(bad, "train", 4)


def test_cli_info_and_errors(built, capsys):
    from tfmusic.cli.main import main

    assert main(["measures", "info", str(built[0] / "a"), "--split", "train", "--examples", "1"]) == 0
    out = capsys.readouterr().out
    assert "rhythmic_complexity" in out and "bars_out" in out
    assert main(["measures", "info", str(built[0] / "nope")]) == 2
    assert main(["measures", "build", "--out", str(built[0] / "x"), "--max-files", "0"]) == 2


def test_record_bytes_do_not_depend_on_the_process():
    """Beam workers are separate processes with their own hash seeds; records must not change."""
    import os
    import subprocess
    import sys

    grid = [67, HOLD, 69, REST] + [HOLD] * 20
    code = ("from tfmusic.data import measures as M; import sys; "
            f"sys.stdout.write(M.bar_example('bach', 't#0', 3, {grid}).hex())")
    env = {**os.environ, "PYTHONHASHSEED": "7"}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert other.stdout == M.bar_example("bach", "t#0", 3, grid).hex()
