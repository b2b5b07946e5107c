"""Monophonic 4/4 measures from the music21 corpus for the Measure VAE (spec B.3/B.4).

Pipeline: corpus file -> tunes -> 4/4 bars -> *pitch grid* of 24 ticks (6 per beat at beat
fractions 0, 1/4, 1/3, 1/2, 2/3, 3/4) holding a MIDI onset, REST (-1) or HOLD (-2) -> tokens and
the four attributes of :mod:`tfmusic.music.attributes` -> TFRecords split by tune.

Vocabulary (frozen, sorted, independent of hashing; written as ``vocabulary.json``):
ids 0-4 = ``<pad>``, ``START``, ``END``, ``rest``, ``__`` (hold); ids 5..34 = the 30 pitches MIDI
55 (G3) .. 84 (C6) in ascending MIDI order, spelled as music21 spells a MIDI number (C#, E-, F#,
G#, B-). Enharmonic spellings in the source are therefore normalized: the reference keeps the
source spelling; for a one-bar model both name the same pitch.

Bar rules (each rejection is counted with its reason in the manifest):
* the bar's time signature is 4/4 or 2/2 (reels are written C|) and its length is 4 quarters
  (this drops pickup and closing partial bars) -> else ``time_signature`` / ``incomplete_bar``;
* one part and voice, no chords -> ``not_single_part`` / ``multiple_voices`` / ``chord``; every
  onset exactly on one of the 24 ticks -> ``off_grid``;
  grace notes are dropped; a note tied from an earlier note is a hold;
* the bar fits into MIDI 55-84 after some transposition (span <= 29) -> else ``out_of_range``.
  Stored bars are shifted by the smallest number of semitones that brings them into the range
  (0 for almost all). The reference transposes whole tunes; transposing single bars keeps every
  bar whose own span fits (a documented simplification).

Transposition augmentation (the reference adds every transposition inside the range) happens
at read time in :func:`load`: each bar is shifted by a uniformly drawn number of semitones that
keeps it inside 55-84. All four attributes are transposition invariant, so they stay valid.

Splits (deterministic, seeded hashing instead of a shuffled list, so a subset run assigns a tune
the same split as the full run): a tune goes to ``test`` with probability 0.1; the bars of the
other tunes go to ``train`` / ``validation`` / ``eval`` with probabilities 0.7 / 0.2 / 0.1 (B.3:
90/10 train/test files, then 70/20/10 inside the train-file bars).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from tfmusic.music.attributes import (
    ATTRIBUTE_NAMES,
    HOLD,
    HOLD_TOKEN,
    REST,
    REST_TOKEN,
    TICK_FRACTIONS,
    TICKS_PER_BAR,
    TICKS_PER_BEAT,
    grid_attributes,
)
from tfmusic.music.notes import midi_to_name

DATASET_NAME = "measures"
MIN_PITCH = 55
MAX_PITCH = 84
PAD_ID, START_ID, END_ID, REST_ID, HOLD_ID = 0, 1, 2, 3, 4
NOTE_OFFSET = 5
SPECIAL_TOKENS = ("<pad>", "START", "END", REST_TOKEN, HOLD_TOKEN)
#: The frozen vocabulary: special tokens, then MIDI 55..84 ascending.
VOCABULARY: tuple[str, ...] = SPECIAL_TOKENS + tuple(
    midi_to_name(m) for m in range(MIN_PITCH, MAX_PITCH + 1))
VOCAB_SIZE = len(VOCABULARY)
SPLITS = ("train", "validation", "eval", "test")
TEST_TUNE_FRACTION = 0.10
BAR_SPLIT_FRACTIONS = (("train", 0.70), ("validation", 0.20), ("eval", 0.10))
#: Bumped whenever the extraction rules change, so stale cache entries are ignored.
EXTRACT_VERSION = 2

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


# --------------------------------------------------------------------------- vocabulary


def vocabulary_json() -> dict:
    """The vocabulary document written next to the data (and checked by the reader)."""
    return {
        "tokens": list(VOCABULARY),
        "pad_id": PAD_ID, "start_id": START_ID, "end_id": END_ID,
        "rest_id": REST_ID, "hold_id": HOLD_ID,
        "note_offset": NOTE_OFFSET, "min_pitch": MIN_PITCH, "max_pitch": MAX_PITCH,
        "ticks_per_bar": TICKS_PER_BAR, "tick_fractions_of_beat": ["0", "1/4", "1/3", "1/2", "2/3", "3/4"],
        "attributes": list(ATTRIBUTE_NAMES),
        "doc": "ids 0-4 special tokens; id = 5 + (MIDI - 55) for MIDI 55..84, spelled as music21 "
               "spells a MIDI number; '__' holds the previous note or rest.",
    }


def grid_to_ids(grid: np.ndarray) -> np.ndarray:
    """Pitch grid (in range) -> token ids of :data:`VOCABULARY`."""
    grid = np.asarray(grid, dtype=np.int64)
    notes = grid >= 0
    if np.any(notes & ((grid < MIN_PITCH) | (grid > MAX_PITCH))):
        raise ValueError(f"pitch outside MIDI {MIN_PITCH}-{MAX_PITCH} in grid {grid.tolist()}")
    return np.where(notes, grid - MIN_PITCH + NOTE_OFFSET, np.where(grid == REST, REST_ID, HOLD_ID))


def ids_to_grid(ids: np.ndarray) -> np.ndarray:
    """Token ids -> pitch grid; START/END/pad map to HOLD (they carry no onset)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.where(ids >= NOTE_OFFSET, ids - NOTE_OFFSET + MIN_PITCH, np.where(ids == REST_ID, REST, HOLD))


def ids_to_tokens(ids: Iterable[int]) -> list[str]:
    return [VOCABULARY[int(i)] for i in ids]


def fit_shift(grid: np.ndarray) -> tuple[int, int] | None:
    """Allowed semitone shifts ``(lo, hi)`` keeping the bar inside 55-84; None if none exists."""
    notes = grid[grid >= 0]
    if notes.size == 0:
        return (0, 0)
    lo, hi = MIN_PITCH - int(notes.min()), MAX_PITCH - int(notes.max())
    return (lo, hi) if lo <= hi else None


# --------------------------------------------------------------------------- extraction


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


def quantize_measure(measure) -> tuple[np.ndarray | None, str | None]:
    """One music21 Measure -> (pitch grid, None) or (None, rejection reason)."""
    from music21 import chord, note

    if len(measure.voices) > 1:
        return None, "multiple_voices"
    grid = np.full(TICKS_PER_BAR, HOLD, dtype=np.int64)
    seen: set[int] = set()
    for el in measure.flatten().notesAndRests:
        if el.duration.isGrace or el.duration.quarterLength == 0:
            continue
        if isinstance(el, chord.Chord):
            return None, "chord"
        tick = _tick_of(float(el.offset))
        if tick is None:
            return None, "off_grid"
        if tick in seen:
            return None, "off_grid"
        seen.add(tick)
        if isinstance(el, note.Note):
            if el.tie is not None and el.tie.type in ("stop", "continue"):
                continue  # continuation of a tied note: stays a hold
            grid[tick] = int(el.pitch.midi)
        else:
            grid[tick] = REST
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
    for index, m in enumerate(measures):
        if m.timeSignature is not None:
            current = m.timeSignature
        if current is None or current.ratioString not in _ACCEPTED_METERS:
            rejected["time_signature"] += 1
            continue
        if abs(float(m.duration.quarterLength) - 4.0) > _TOL:
            rejected["incomplete_bar"] += 1
            continue
        grid, reason = quantize_measure(m)
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


def _cache_path(cache_dir: Path, relpath: str) -> Path:
    path = corpus_root() / relpath
    st = path.stat()
    key = hashlib.sha1(f"{relpath}|{st.st_size}|{EXTRACT_VERSION}".encode()).hexdigest()[:16]
    return cache_dir / f"{relpath.replace('/', '__')}.{key}.json"


def extract_file(collection: str, relpath: str, cache_dir: str | os.PathLike | None = None) -> dict:
    """All bars of one corpus file, as a JSON-able dict; served from ``cache_dir`` when present.

    Result keys: ``source``, ``collection``, ``tunes`` (count), ``bars`` (list of
    ``[tune_id, bar_index, grid]``), ``bars_seen``, ``rejected`` (reason -> bar count),
    ``error`` (None, or why the file could not be parsed).
    """
    cache_file = None
    if cache_dir is not None:
        cache_file = _cache_path(Path(cache_dir), relpath)
        if cache_file.is_file():
            return json.loads(cache_file.read_text())
    from music21 import converter, stream

    result = {"source": relpath, "collection": collection, "tunes": 0, "bars": [], "bars_seen": 0,
              "rejected": {}, "error": None}
    try:
        parsed = converter.parse(corpus_root() / relpath)
    except Exception as err:  # noqa: BLE001 - any parser failure rejects the whole file
        result["error"] = f"{relpath}: music21 could not parse the file: {type(err).__name__}: {err}"
    else:
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
        rejected: Counter = Counter()
        for k, score in enumerate(scores):
            bars, rej, seen = extract_score(collection, f"{relpath}#{k}", score)
            result["bars"].extend([b.tune_id, b.bar_index, list(b.grid)] for b in bars)
            result["bars_seen"] += seen
            rejected.update(rej)
        result["tunes"] = len(scores)
        result["rejected"] = dict(sorted(rejected.items()))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(cache_file.name + ".tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, cache_file)
    return result


# --------------------------------------------------------------------------- splits and records


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def assign_split(tune_id: str, bar_index: int, seed: int = 0) -> str:
    """Deterministic split of one bar: tune-level test split, then bar-level train/validation/eval."""
    if _unit_hash(f"{seed}|tune|{tune_id}") < TEST_TUNE_FRACTION:
        return "test"
    u = _unit_hash(f"{seed}|bar|{tune_id}|{bar_index}")
    acc = 0.0
    for name, frac in BAR_SPLIT_FRACTIONS:
        acc += frac
        if u < acc:
            return name
    return BAR_SPLIT_FRACTIONS[-1][0]


def bar_example(collection: str, tune_id: str, bar_index: int, grid: Sequence[int]) -> bytes:
    """A serialized ``tf.train.Example`` for one bar (tokens, pitches, attributes, provenance)."""
    from tfmusic.data import schema

    g = np.asarray(grid, dtype=np.int64)
    return schema.make_example({
        "tokens": schema.int64_feature(grid_to_ids(g)),
        "pitches": schema.int64_feature(g),
        "attributes": schema.float_feature(grid_attributes(g)),
        "bar_index": schema.int64_feature([bar_index]),
        "tune_id": schema.bytes_feature([tune_id.encode()]),
        "collection": schema.bytes_feature([collection.encode()]),
    }).SerializeToString(deterministic=True)  # map keys sorted: same bytes in every process


# --------------------------------------------------------------------------- tf.data reader


def read_vocabulary(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / "vocabulary.json"
    if not path.is_file():
        raise FileNotFoundError(2, "measures vocabulary.json missing (build the dataset first)", str(path))
    doc = json.loads(path.read_text())
    if doc.get("tokens") != list(VOCABULARY):
        raise ValueError(f"{path}: vocabulary differs from the frozen tfmusic vocabulary; rebuild the data")
    return doc


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """The build manifest (counts in/out/rejected, splits), with errors that name the file."""
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(2, "no measures manifest (build the set with `tfmusic measures build`)", str(path))
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def load(
    data_dir: str | os.PathLike,
    split: str,
    batch_size: int,
    *,
    shuffle: bool | None = None,
    transpose: bool | None = None,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int = 50_000,
):
    """A ``tf.data.Dataset`` of ``(tokens int32 (B, 24), attributes float32 (B, 4))``.

    ``shuffle`` and ``transpose`` (random in-range transposition per bar) default to on for
    ``train`` and off otherwise; both are deterministic given ``seed``.
    """
    import tensorflow as tf

    from tfmusic.data import schema
    from tfmusic.data.tfds_metadata import list_shards

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    read_vocabulary(data_dir)
    files = [str(p) for p in list_shards(data_dir, DATASET_NAME, split)]
    is_train = split == "train"
    shuffle = is_train if shuffle is None else shuffle
    transpose = is_train if transpose is None else transpose
    spec = schema.measures_parse_spec()

    ds = tf.data.TFRecordDataset(files)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed))

    def parse(record, rnd):
        ex = tf.io.parse_single_example(record, spec)
        pitches = ex["pitches"]
        if transpose:
            notes = pitches >= 0
            any_note = tf.reduce_any(notes)
            lo = tf.where(any_note, MIN_PITCH - tf.reduce_min(tf.where(notes, pitches, 1000)), 0)
            hi = tf.where(any_note, MAX_PITCH - tf.reduce_max(tf.where(notes, pitches, -1000)), 0)
            shift = lo + tf.math.floormod(rnd, hi - lo + 1)
            pitches = tf.where(notes, pitches + shift, pitches)
        tokens = tf.where(pitches >= 0, pitches - MIN_PITCH + NOTE_OFFSET,
                          tf.where(pitches == REST, tf.constant(REST_ID, tf.int64), HOLD_ID))
        return tf.cast(tokens, tf.int32), ex["attributes"]

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def read_numpy(data_dir: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """A whole split as numpy (tokens, pitches, attributes, bar_index, tune_id) for evaluation and tests."""
    import tensorflow as tf

    from tfmusic.data import schema
    from tfmusic.data.tfds_metadata import list_shards

    read_vocabulary(data_dir)
    spec = schema.measures_parse_spec()
    keys = ("tokens", "pitches", "attributes", "bar_index", "tune_id")
    cols: dict[str, list] = {k: [] for k in keys}
    files = [str(f) for f in list_shards(data_dir, DATASET_NAME, split)]
    ds = tf.data.TFRecordDataset(files).batch(4096).map(lambda r: tf.io.parse_example(r, spec))
    for ex in ds.as_numpy_iterator():
        for k in keys:
            cols[k].append(ex[k])
    shapes = {"tokens": (TICKS_PER_BAR,), "pitches": (TICKS_PER_BAR,), "attributes": (len(ATTRIBUTE_NAMES),),
              "bar_index": (), "tune_id": ()}
    out = {k: (np.concatenate(cols[k]) if cols[k] else np.zeros((0, *shapes[k]))) for k in keys}
    return {
        "tokens": out["tokens"].astype(np.int32),
        "pitches": out["pitches"].astype(np.int64),
        "attributes": out["attributes"].astype(np.float32),
        "bar_index": out["bar_index"].astype(np.int64),
        "tune_id": np.asarray([t.decode() for t in out["tune_id"]], dtype=object),
    }


# --------------------------------------------------------------------------- the Beam job


def iter_bar_records(result: dict, seed: int) -> Iterator[tuple[str, tuple[str, int], bytes]]:
    """``(split, sort key, serialized example)`` for every bar of one :func:`extract_file` result."""
    for tune_id, bar_index, grid in result["bars"]:
        yield (assign_split(tune_id, bar_index, seed), (tune_id, bar_index),
               bar_example(result["collection"], tune_id, bar_index, grid))


def file_stats(result: dict) -> Counter:
    """Counts contributed by one file: files, tunes, bars in / out / rejected per reason."""
    c: Counter = Counter(files_in=1)
    if result["error"]:
        c["files_failed"] += 1
        c[f"error/{result['error']}"] += 1
        return c
    c["tunes_in"] += result["tunes"]
    c["tunes_with_bars"] += len({b[0] for b in result["bars"]})
    c["bars_in"] += result["bars_seen"]
    c["bars_out"] += len(result["bars"])
    for reason, n in result["rejected"].items():
        c[f"bars_rejected/{reason}"] += n
    c[f"bars_out/{result['collection']}"] += len(result["bars"])
    return c


def build(
    out_dir: str | os.PathLike,
    *,
    collections: Sequence[str] = DEFAULT_COLLECTIONS,
    max_files: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    beam_args: Sequence[str] = (),
    progress: bool = True,
) -> dict:
    """Run the measures Beam job; writes shards, ``vocabulary.json`` and ``manifest.json``; returns the manifest."""
    import time

    import apache_beam as beam

    from tfmusic.beam_options import make_pipeline, progress_dofn
    from tfmusic.data.tfds_metadata import shard_filename, write_tfrecord

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out_dir / "cache"
    sources = list_sources(collections, max_files)
    (out_dir / "vocabulary.json").write_text(json.dumps(vocabulary_json(), indent=2) + "\n")
    start = time.time()
    results_dir = out_dir / ".parts"
    results_dir.mkdir(exist_ok=True)

    def extract(source):
        collection, relpath = source
        return extract_file(collection, relpath, cache)

    def write_split(item):
        split, keyed = item
        records = [rec for _, rec in sorted(keyed)]
        path = out_dir / shard_filename(DATASET_NAME, split, 0, 1)
        size = write_tfrecord(path, records)
        (results_dir / f"{split}.json").write_text(json.dumps({"records": len(records), "bytes": size}))

    def write_stats(stats):
        (results_dir / "stats.json").write_text(json.dumps(dict(sorted(stats.items()))))

    def merge(counters):
        total: Counter = Counter()
        for c in counters:
            total.update(c)
        return total

    with make_pipeline(beam_args) as p:
        results = (p | "Sources" >> beam.Create(sources)
                   | "Reshuffle" >> beam.Reshuffle()
                   | "Extract" >> beam.ParDo(progress_dofn(extract, total=len(sources), desc="measures: files",
                                                           unit="file", enabled=progress)))
        (results | "Stats" >> beam.Map(file_stats)
         | "SumStats" >> beam.CombineGlobally(merge)
         | "WriteStats" >> beam.Map(write_stats))
        splits = p | "Splits" >> beam.Create([(s, None) for s in SPLITS])
        bars = (results | "Bars" >> beam.FlatMap(lambda r: iter_bar_records(r, seed))
                | "KeyBySplit" >> beam.Map(lambda t: (t[0], (t[1], t[2]))))
        ((bars, splits) | beam.Flatten()
         | "GroupSplit" >> beam.GroupByKey()
         | "DropMarker" >> beam.MapTuple(lambda s, vs: (s, [v for v in vs if v is not None]))
         | "Write" >> beam.Map(write_split))

    stats = json.loads((results_dir / "stats.json").read_text())
    split_info = {s: json.loads((results_dir / f"{s}.json").read_text()) for s in SPLITS}
    for f in results_dir.iterdir():
        f.unlink()
    results_dir.rmdir()
    rejected = {k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith("bars_rejected/")}
    manifest = {
        "dataset": DATASET_NAME,
        "collections": list(collections),
        "max_files": max_files,
        "seed": seed,
        "extract_version": EXTRACT_VERSION,
        "files_in": stats.get("files_in", 0),
        "files_failed": stats.get("files_failed", 0),
        "tunes_in": stats.get("tunes_in", 0),
        "tunes_with_bars": stats.get("tunes_with_bars", 0),
        "bars_in": stats.get("bars_in", 0),
        "bars_out": stats.get("bars_out", 0),
        "bars_rejected": rejected,
        "file_errors": sorted(k.split("/", 1)[1] for k in stats if k.startswith("error/")),
        "bars_out_by_collection": {k.split("/", 1)[1]: v for k, v in stats.items()
                                   if k.startswith("bars_out/")},
        "splits": {s: split_info[s]["records"] for s in SPLITS},
        "shards": {s: shard_filename(DATASET_NAME, s, 0, 1) for s in SPLITS},
        "wall_seconds": round(time.time() - start, 2),
    }
    if manifest["bars_in"] != manifest["bars_out"] + sum(rejected.values()):
        raise RuntimeError(f"measures counts do not add up: {manifest}")
    if sum(manifest["splits"].values()) != manifest["bars_out"]:
        raise RuntimeError(f"measures split counts do not add up: {manifest}")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
