"""dMelodies outside TFRecords: the reference ``.npz`` layout and MIDI/MusicXML/piano-roll files."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from tfmusic.data.dmelodies.factors import (FACTOR_NAMES, NUM_ITEMS, TICKS_PER_BEAT, _check_indices,
                                           describe_factors, generate_items, index_to_note, latent_dicts,
                                           note_to_index, token_names)
from tfmusic.data.dmelodies.reader import read_items


def export_npz(path: str | os.PathLike, *, compress: bool = False, limit: int | None = None) -> Path:
    """The reference ``.npz`` layout (product order): score_array, latent_array, note2index_dict,
    index2note_dict, latent_dicts, metadata. Load it with ``np.load(path, allow_pickle=True)``."""
    n = NUM_ITEMS if limit is None else int(limit)
    if not 1 <= n <= NUM_ITEMS:
        raise ValueError(f"limit must lie in 1..{NUM_ITEMS}, got {limit}")
    tokens, factors = generate_items(np.arange(n))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "title": "dMelodies dataset",
        "description": "dMelodies dataset: 2-bar monophonic melodies from 9 independent factors of variation "
                       "(regenerated in closed form by tfmusic).",
        "version": 1,
        "authors": "Ashis Pati, Siddharth Gururani, Alexander Lerch (dataset design); tfmusic (generator)",
        "creation_date": _dt.date.today().isoformat(),
        "latents_names": FACTOR_NAMES,
    }
    save = np.savez_compressed if compress else np.savez
    with open(path, "wb") as fh:
        save(fh, score_array=tokens.astype(np.int32), latent_array=factors.astype(np.int32),
             note2index_dict=note_to_index(), index2note_dict=index_to_note(),
             latent_dicts=latent_dicts(), metadata=metadata)
    return path


def export_midi(indices: Iterable[int], out_dir: str | os.PathLike, *, png: bool = False,
                data_dir: str | os.PathLike | None = None) -> list[Path]:
    """MIDI + MusicXML per item (through music21) and optionally one PNG piano roll of all of them.
    With ``data_dir`` the items are read from a generated dataset instead of the closed form."""
    from tfmusic.music import render

    idx = _check_indices(list(indices))
    if idx.size == 0:
        raise ValueError("no indices given")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens, factors = read_items(data_dir, idx) if data_dir is not None else generate_items(idx)
    names = token_names(tokens)
    written: list[Path] = []
    titles = []
    for i, events, f in zip(idx.tolist(), names, factors):
        title = f"dMelodies {i}: {describe_factors(f)}"
        titles.append(title)
        score = render.events_to_score(events, ticks_per_beat=TICKS_PER_BEAT, title=title)
        stem = out_dir / f"dmelodies_{i:07d}"
        written.append(render.write_midi(score, stem.with_suffix(".mid")))
        written.append(render.write_musicxml(score, stem.with_suffix(".musicxml")))
    if png:
        written.append(render.plot_pianorolls(names, out_dir / "dmelodies_pianoroll.png",
                                              titles=titles, ticks_per_beat=TICKS_PER_BEAT))
    return written
