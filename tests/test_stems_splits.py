"""Song-level split shares: pinned MUSDB test songs, shares that assign nothing, and the CLI's answer."""

from __future__ import annotations

import json

import pytest

from tests.test_stems_layouts import make_musdb
from tfmusic.data.stems.splits import assign_splits


def test_every_song_pinned_to_test_needs_no_shares():
    ids = ["test/a", "test/b"]
    fixed = {i: "test" for i in ids}
    for shares in ((0, 0, 1), (0.8, 0.1, 0.1), (1, 0, 0)):
        assert assign_splits(ids, 0, shares, fixed) == fixed


def test_free_songs_follow_their_shares_when_nothing_is_pinned():
    ids = [f"s{k}" for k in range(5)]
    assert set(assign_splits(ids, 0, (0, 0, 1)).values()) == {"test"}
    assert set(assign_splits(ids, 0, (1, 0, 0)).values()) == {"train"}


def test_shares_that_assign_nothing_are_refused_in_one_line():
    # MUSDB's test subset is the test split, so the free (train subset) songs may not go to test
    with pytest.raises(ValueError, match=r"assign none of the 1 songs outside the test subset") as err:
        assign_splits(["test/a", "train/b"], 0, (0, 0, 1), {"test/a": "test"})
    assert "\n" not in str(err.value)


def test_cli_preprocesses_a_musdb_tree_with_only_test_songs(tmp_path, capsys):
    from tfmusic.cli.main import main

    make_musdb(tmp_path / "musdb")
    tree = tmp_path / "musdb"
    for song in (tree / "train").iterdir():
        song.rename(tree / "test" / song.name)
    (tree / "train").rmdir()
    out = tmp_path / "stems"
    assert main(["data", "preprocess", "--input", str(tree), "--out", str(out), "--splits", "0,0,1",
                 "--segment-seconds", "1", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["song_splits"].values()) == {"test"} and manifest["splits"]["test"]["songs"] == 3
    assert manifest["splits"]["train"]["songs"] == 0
    capsys.readouterr()

    # with the train subset back, 0,0,1 leaves its songs nowhere: one clear line, no traceback
    make_musdb(tmp_path / "mixed")
    assert main(["data", "preprocess", "--input", str(tmp_path / "mixed"), "--out", str(tmp_path / "o2"),
                 "--splits", "0,0,1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "assign none of the 2 songs outside the test subset" in err
