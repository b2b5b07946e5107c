"""Song-level train/valid/test splits and access to the held-out songs of a preprocessed dataset.

Splits are by song (segments of one song never straddle splits) and depend only on the seed and
the song ids: each song is ranked by a seeded hash of its id (not by input order), so adding a
song shifts at most the songs at the split boundaries. MUSDB's own ``test`` subset stays test.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Iterable, Mapping, Sequence

from tfmusic import storage
from tfmusic.data.stems.track import Track

SPLITS = ("train", "valid", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
MANIFEST = "manifest.json"


def _rank(seed: int, song_id: str) -> str:
    return hashlib.sha256(f"{int(seed)}:{song_id}".encode()).hexdigest()


def assign_splits(
    song_ids: Iterable[str],
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    fixed: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map each song id to ``train`` / ``valid`` / ``test``.

    ``fractions`` are (train, valid, test) shares; with 3 or more free songs every split that has
    a positive share gets at least one song. ``fixed`` pins songs to a split (e.g. MUSDB test);
    when any song is pinned to test, the free songs are split into train/valid only, so shares
    that give them neither (e.g. ``0,0,1``) are refused, but only when there are free songs.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"fractions must be three non-negative shares (train, valid, test), got {fractions}")
    fixed = dict(fixed or {})
    bad = {s for s in fixed.values() if s not in SPLITS}
    if bad:
        raise ValueError(f"unknown split(s) {sorted(bad)}; splits are {SPLITS}")
    ids = sorted(set(song_ids))
    free = sorted((i for i in ids if i not in fixed), key=lambda i: _rank(seed, i))
    shares = list(fractions)
    if "test" in fixed.values():
        shares[2] = 0.0
    total = sum(shares)
    n = len(free)
    if n == 0:  # every song is pinned (e.g. a MUSDB tree with only test/): nothing to share out
        return {i: fixed[i] for i in ids}
    if total <= 0:
        raise ValueError(f"split shares {tuple(fractions)} assign none of the {n} songs outside the test subset "
                         "(the test subset is the test split, so they need a train or valid share)")
    counts = [int(round(n * s / total)) for s in shares]
    if n >= 3:
        for k in (2, 1):
            if shares[k] > 0 and counts[k] == 0:
                counts[k] = 1
    counts[0] = n - counts[1] - counts[2]
    while counts[0] < 0:
        k = 1 if counts[1] >= counts[2] else 2
        counts[k] -= 1
        counts[0] += 1
    out = dict(fixed)
    pos = 0
    for split, count in zip(("test", "valid", "train"), (counts[2], counts[1], counts[0])):
        for song in free[pos:pos + count]:
            out[song] = split
        pos += count
    return {i: out[i] for i in ids}


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """The preprocessing manifest of ``data_dir`` (local or ``gs://``; clear error when it is missing)."""
    path = storage.join(storage.check_path(data_dir, what="data directory"), MANIFEST)
    if not storage.exists(path):
        raise FileNotFoundError(2, "no stems manifest (run `tfmusic data preprocess` first)", path)
    try:
        return json.loads(storage.read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt manifest ({err})") from err


def tracks_for_split(data_dir: str | os.PathLike, split: str, input_root: str | os.PathLike | None = None) -> list[Track]:
    """The songs of ``split`` as :class:`Track` records (``load()`` reads them in full from the source).

    The manifest stores track paths relative to the dataset root; they are resolved against
    ``input_root`` (default: the manifest's ``input``, the root the dataset was preprocessed from),
    so a dataset copied elsewhere is read from its new place with ``input_root``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    manifest = read_manifest(data_dir)
    root = os.fspath(input_root) if input_root is not None else manifest.get("input", "")
    tracks = []
    for song_id, info in sorted(manifest["songs"].items()):
        if info["split"] != split or info.get("status") == "rejected":  # rejected songs are in no split's data
            continue
        tracks.append(Track(**info["track"]).resolved(root))
    return tracks
