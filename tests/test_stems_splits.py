"""Song-level splits (``tfmusic.data.stems.splits.assign_splits``) checked by their promised properties.

Why: the preprocessing test compares the manifest with ``assign_splits`` itself, which any change to it
would pass; these tests state what the splits must be without re-deriving them.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.test_stems_layouts import make_musdb
from tfmusic.data.stems.splits import assign_splits

SONGS = [f"song{i:02d}" for i in range(20)]


@pytest.mark.parametrize("n,fractions,counts", [
    (20, (0.8, 0.1, 0.1), {"train": 16, "valid": 2, "test": 2}),
    (10, (0.6, 0.3, 0.1), {"train": 6, "valid": 3, "test": 1}),
    (10, (0.5, 0.0, 0.5), {"train": 5, "test": 5}),
    (3, (0.8, 0.1, 0.1), {"train": 1, "valid": 1, "test": 1}),  # every split with a share gets a song
])
def test_split_sizes_follow_the_fractions(n, fractions, counts):
    assert Counter(assign_splits(SONGS[:n], seed=0, fractions=fractions).values()) == counts


def test_splits_are_a_function_of_seed_and_ids_only():
    splits = assign_splits(SONGS, seed=0)
    assert list(splits) == sorted(SONGS)
    assert assign_splits(list(reversed(SONGS)) + SONGS[:3], seed=0) == splits  # order and duplicates
    others = [assign_splits(SONGS, seed=seed) for seed in (1, 2, 3)]
    assert all(Counter(o.values()) == Counter(splits.values()) for o in others)
    assert any(o != splits for o in others)  # the seed picks which songs are held out


def test_adding_a_song_moves_at_most_the_songs_at_the_boundaries():
    splits = assign_splits(SONGS, seed=0)
    for new in ("late-arrival", "another", "zzz"):
        grown = assign_splits(SONGS + [new], seed=0)
        assert sum(grown[s] != splits[s] for s in SONGS) <= 2


def test_pinned_test_songs_leave_train_and_valid_to_the_others():
    """MUSDB's own test subset stays test; the free songs go to train/valid in their (renormalized) shares."""
    fixed = {f"musdb-test{i}": "test" for i in range(5)}
    splits = assign_splits(SONGS[:10] + list(fixed), seed=0, fixed=fixed)
    assert {s: splits[s] for s in fixed} == fixed
    assert Counter(splits[s] for s in SONGS[:10]) == {"train": 9, "valid": 1}


def test_bad_fractions_and_splits_are_rejected():
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(SONGS, fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(SONGS, fractions=(1.0, -0.1, 0.1))
    with pytest.raises(ValueError, match="unknown split"):
        assign_splits(SONGS, fixed={"song00": "holdout"})


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
