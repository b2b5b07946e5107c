"""Monophonic 4/4 measures from the music21 corpus for the Measure VAE (spec B.3/B.4).

corpus file -> tunes -> 4/4 bars -> pitch grid of 24 ticks -> tokens and the four attributes of
:mod:`tfmusic.music.attributes` -> TFRecords split by tune. One module per step:

* :mod:`.vocab`   the frozen format: :data:`VERSION`, vocabulary, grid <-> token ids;
* :mod:`.extract` music21 parsing and the bar rules (ties, meters, grid, range), per-file cache;
* :mod:`.records` tune-level splits, dropping evaluation bars that duplicate training bars, examples;
* :mod:`.beam`    the :func:`BuildMeasures` PTransform and the :func:`build` driver (any filesystem);
* :mod:`.loader`  the reader: ``tf.data`` with transposition augmentation, numpy, manifest.
"""

from tfmusic.data.measures.beam import BuildMeasures, build, prepare
from tfmusic.data.measures.extract import (
    COLLECTIONS,
    DEFAULT_COLLECTIONS,
    Bar,
    corpus_root,
    extract_file,
    extract_score,
    extract_scores,
    list_sources,
    quantize_measure,
)
from tfmusic.data.measures.loader import load, read_manifest, read_numpy, read_vocabulary
from tfmusic.data.measures.records import (
    DUPLICATE_REASON,
    EVALUATION_SPLITS,
    SPLITS,
    TUNE_SPLIT_FRACTIONS,
    assign_split,
    bar_example,
    hold_out,
)
from tfmusic.data.measures.vocab import (
    DATASET_NAME,
    END_ID,
    HOLD_ID,
    MANIFEST,
    MAX_PITCH,
    MIN_PITCH,
    NOTE_OFFSET,
    PAD_ID,
    REST_ID,
    SPECIAL_TOKENS,
    START_ID,
    VERSION,
    VOCAB_SIZE,
    VOCABULARY,
    VOCABULARY_FILE,
    fit_shift,
    grid_to_ids,
    ids_to_grid,
    ids_to_tokens,
    transposition_class,
    vocabulary_json,
)

__all__ = [
    "BuildMeasures", "build", "prepare", "COLLECTIONS", "DEFAULT_COLLECTIONS", "Bar", "corpus_root",
    "extract_file", "extract_score", "extract_scores", "list_sources", "quantize_measure", "load",
    "read_manifest", "read_numpy", "read_vocabulary", "DUPLICATE_REASON", "EVALUATION_SPLITS", "SPLITS",
    "TUNE_SPLIT_FRACTIONS", "assign_split", "bar_example", "hold_out", "DATASET_NAME", "END_ID", "HOLD_ID",
    "MANIFEST", "MAX_PITCH", "MIN_PITCH", "NOTE_OFFSET", "PAD_ID", "REST_ID", "SPECIAL_TOKENS", "START_ID",
    "VERSION", "VOCAB_SIZE", "VOCABULARY", "VOCABULARY_FILE", "fit_shift", "grid_to_ids", "ids_to_grid",
    "ids_to_tokens", "transposition_class", "vocabulary_json",
]
