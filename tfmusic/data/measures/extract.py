"""music21 corpus files -> monophonic 4/4 bars as 24-tick pitch grids (spec B.3/B.4).

A *pitch grid* has 24 ticks (6 per beat at beat fractions 0, 1/4, 1/3, 1/2, 2/3, 3/4) holding a
MIDI onset, REST (-1) or HOLD (-2).

Bar rules (each rejection is counted with its reason in the manifest):
* the bar's time signature is 4/4 or 2/2 (reels are written C|) and its length is 4 quarters
  (this drops pickup and closing partial bars) -> else ``time_signature`` / ``incomplete_bar``;
* one part and voice, no chords -> ``not_single_part`` / ``multiple_voices`` / ``chord``; every
  onset exactly on one of the 24 ticks -> ``off_grid``; grace notes are dropped;
* a note tied from an earlier note is a hold only when it has that note's pitch. O'Neill's ABC
  joins *different* pitches with hyphens (``d>-c``, ``A-B``), which music21 parses as ties; such a
  "tie" onto another pitch is a new onset (the tied-from note may end the previous bar);
* the bar fits into MIDI 55-84 after some transposition (span <= 29) -> else ``out_of_range``.
  Stored bars are shifted by the smallest number of semitones that brings them into the range
  (0 for almost all). The reference transposes whole tunes; transposing single bars keeps every
  bar whose own span fits (a documented simplification).

Corpus files are music21's package data, so every worker reads its own copy; sources are named by
their path relative to the corpus root. :func:`extract_file` can keep its result in a cache folder
on any storage (``gs://`` included), keyed by the file's content, music21's version and
:data:`~.vocab.VERSION`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tfmusic import storage
from tfmusic.data.measures.vocab import VERSION, fit_shift
from tfmusic.music.attributes import HOLD, REST, TICK_FRACTIONS, TICKS_PER_BAR, TICKS_PER_BEAT

#: Selectable corpus collections -> music21 corpus name and how a tune's melody is chosen.
COLLECTIONS = {
    "oneills1850": "O'Neill's Music of Ireland (1850), 39 ABC files, 2009 tunes",
    "ryansMammoth": "Ryan's Mammoth Collection, 1059 ABC files, one tune each",
    "essenFolksong": "Essen folksong collection, 31 ABC files, 8514 tunes (~15 s parse per file)",
    "bach": "Bach chorales (.mxl), soprano line only (the part named Soprano, else the first of four)",
}
DEFAULT_COLLECTIONS = ("oneills1850", "ryansMammoth", "essenFolksong", "bach")

_ACCEPTED_METERS = ("4/4", "2/2")
_TOL = 1e-6


@dataclass(frozen=True)
class Bar:
    tune_id: str
    bar_index: int  # ordinal of the bar inside its tune (0-based, over all measures)
    grid: tuple[int, ...]


def _tick_of(offset: float) -> int | None:
    beat = int(np.floor(offset + _TOL))
    frac = offset - beat
    for k, f in enumerate(TICK_FRACTIONS):
        if abs(frac - f) < _TOL:
            tick = beat * TICKS_PER_BEAT + k
            return tick if 0 <= tick < TICKS_PER_BAR else None
    return None


def _sounding(measure) -> list:
    """The notes and rests of a measure that take time (grace notes dropped), in order."""
    return [el for el in measure.flatten().notesAndRests
            if not (el.duration.isGrace or el.duration.quarterLength == 0)]


def _pitch_of(el) -> int | None:
    """MIDI number of a note; None for a rest or a chord."""
    return int(el.pitch.midi) if el.isNote else None


def _last_pitch(measure) -> int | None:
    """MIDI number of the measure's last sounding event when it is a note (what a tie continues)."""
    events = _sounding(measure)
    return _pitch_of(events[-1]) if events else None


def quantize_measure(measure, previous: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """One music21 Measure -> (pitch grid, None) or (None, rejection reason).

    ``previous`` is the MIDI number of the note sounding just before the measure (None for a
    rest or the start of the tune): a tie continuation at the bar's start holds only if it has
    that pitch.
    """
    from music21 import chord, note

    if len(measure.voices) > 1:
        return None, "multiple_voices"
    grid = np.full(TICKS_PER_BAR, HOLD, dtype=np.int64)
    seen: set[int] = set()
    for el in _sounding(measure):
        if isinstance(el, chord.Chord):
            return None, "chord"
        tick = _tick_of(float(el.offset))
        if tick is None or tick in seen:
            return None, "off_grid"
        seen.add(tick)
        pitch = _pitch_of(el)
        if isinstance(el, note.Note):
            held = el.tie is not None and el.tie.type in ("stop", "continue") and pitch == previous
            if not held:  # a same-pitch tie continuation stays a hold; anything else is an onset
                grid[tick] = pitch
        else:
            grid[tick] = REST
        previous = pitch
    return grid, None


def _melody_parts(collection: str, score) -> tuple[object | None, str | None]:
    parts = list(score.parts)
    if collection == "bach":
        named = [p for p in parts if "soprano" in f"{p.partName or ''} {p.id}".lower()]
        if len(named) == 1:
            return named[0], None
        if len(parts) != 4:
            return None, "no_soprano_part"
        return parts[0], None
    if len(parts) != 1:
        return None, "not_single_part"
    return parts[0], None


def extract_score(collection: str, tune_id: str, score) -> tuple[list[Bar], Counter, int]:
    """Bars of one tune; returns (bars, bar rejections by reason, number of bars seen)."""
    from music21 import meter

    rejected: Counter = Counter()
    part, reason = _melody_parts(collection, score)
    if part is None:
        n = len(score.recurse().getElementsByClass("Measure")) // max(1, len(list(score.parts)))
        rejected[reason] += n
        return [], rejected, n
    current = part.recurse().getElementsByClass(meter.TimeSignature).first()
    bars: list[Bar] = []
    measures = list(part.getElementsByClass("Measure"))
    previous: int | None = None  # last pitch of the measure before (kept or not)
    for index, m in enumerate(measures):
        before, previous = previous, _last_pitch(m)
        if m.timeSignature is not None:
            current = m.timeSignature
        if current is None or current.ratioString not in _ACCEPTED_METERS:
            rejected["time_signature"] += 1
            continue
        if abs(float(m.duration.quarterLength) - 4.0) > _TOL:
            rejected["incomplete_bar"] += 1
            continue
        grid, reason = quantize_measure(m, before)
        if grid is None:
            rejected[reason] += 1
            continue
        shifts = fit_shift(grid)
        if shifts is None:
            rejected["out_of_range"] += 1
            continue
        lo, hi = shifts
        shift = 0 if lo <= 0 <= hi else (lo if lo > 0 else hi)
        grid = np.where(grid >= 0, grid + shift, grid)
        bars.append(Bar(tune_id, index, tuple(int(v) for v in grid)))
    return bars, rejected, len(measures)


def extract_scores(collection: str, source: str, parsed) -> dict:
    """Bars of a parsed file (one score or an opus of tunes) as :func:`extract_file`'s result dict."""
    from music21 import stream

    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    result = {"source": source, "collection": collection, "tunes": len(scores), "bars": [], "bars_seen": 0,
              "rejected": {}, "error": None}
    rejected: Counter = Counter()
    for k, score in enumerate(scores):
        bars, rej, seen = extract_score(collection, f"{source}#{k}", score)
        result["bars"].extend([b.tune_id, b.bar_index, list(b.grid)] for b in bars)
        result["bars_seen"] += seen
        rejected.update(rej)
    result["rejected"] = dict(sorted(rejected.items()))
    return result


def corpus_root() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


def list_sources(collections: Sequence[str], max_files: int | None = None) -> list[tuple[str, str]]:
    """Sorted ``(collection, path relative to the corpus root)`` pairs, the first ``max_files`` of each."""
    from music21 import corpus

    root = corpus_root()
    out: list[tuple[str, str]] = []
    for name in collections:
        if name not in COLLECTIONS:
            raise ValueError(f"unknown collection {name!r}; choose from {', '.join(COLLECTIONS)}")
        paths = sorted(Path(p) for p in corpus.getComposer(name))
        if name == "bach":
            paths = [p for p in paths if p.suffix in (".mxl", ".xml", ".musicxml")]
        if not paths:
            raise ValueError(f"music21 corpus collection {name!r} has no files here")
        if max_files is not None:
            paths = paths[:max_files]
        out.extend((name, p.relative_to(root).as_posix()) for p in paths)
    return out


def cache_path(cache_dir: str, relpath: str) -> str:
    """Cache entry of one corpus file: named by the file, keyed by its content, music21 and VERSION."""
    import music21

    digest = hashlib.sha1(f"{VERSION}|{music21.__version__}|{relpath}|".encode())
    digest.update((corpus_root() / relpath).read_bytes())
    return storage.join(cache_dir, f"{relpath.replace('/', '__')}.{digest.hexdigest()[:16]}.json")


def extract_file(collection: str, relpath: str, cache_dir: str | None = None) -> dict:
    """All bars of one corpus file, as a JSON-able dict; served from ``cache_dir`` when present.

    Result keys: ``source``, ``collection``, ``tunes`` (count), ``bars`` (list of
    ``[tune_id, bar_index, grid]``), ``bars_seen``, ``rejected`` (reason -> bar count),
    ``error`` (None, or why the file could not be parsed).
    """
    cached = cache_path(cache_dir, relpath) if cache_dir is not None else None
    if cached is not None and storage.exists(cached):
        return json.loads(storage.read_text(cached))
    from music21 import converter

    try:
        parsed = converter.parse(corpus_root() / relpath)
    except Exception as err:  # noqa: BLE001 - any parser failure rejects the whole file
        result = {"source": relpath, "collection": collection, "tunes": 0, "bars": [], "bars_seen": 0,
                  "rejected": {}, "error": f"{relpath}: music21 could not parse the file: {type(err).__name__}: {err}"}
    else:
        result = extract_scores(collection, relpath, parsed)
    if cached is not None:
        storage.write_atomic(cached, json.dumps(result, sort_keys=True))
    return result
