"""dMelodies: 1,354,752 two-bar melodies from 9 independent factors, generated in closed form.

The reference generator builds one music21 ``Score`` per item in a sequential loop (~2 ms/item);
here every item is a pure function of its index. One module per concern:

* :mod:`.factors` — index <-> factors, vocabulary, tokens, factor decoding, the music21 oracle;
* :mod:`.splits` — the reference loader's seeded 70/20/10 split, as index lists;
* :mod:`.layout` — the shard plan and file names, shared by the job and the readers;
* :mod:`.pipeline` — the Beam job (:func:`GenerateDMelodies`, :func:`generate`) writing
  TFDS-loadable shards to any Beam filesystem (records encoded by ``tfmusic.data.schema``);
* :mod:`.reader` — metadata, the ``tf.data`` loader and single-item reads;
* :mod:`.exports` — the reference ``.npz`` and MIDI/MusicXML/piano-roll exports.
"""

from tfmusic.data.dmelodies.exports import export_midi, export_npz
from tfmusic.data.dmelodies.factors import (
    ARP_NAMES, DATASET_NAME, FACTOR_NAMES, FACTOR_SIZES, HOLD_ID, HOLD_TOKEN, NUM_FACTORS, NUM_ITEMS, OCTAVES,
    REST_ID, REST_TOKEN, RHYTHM_ONSETS, RHYTHMS, SCALE_NAMES, SEQ_LEN, TICKS_PER_BEAT, TONIC_NAMES, VERSION,
    VOCAB_SIZE, decode_factors, describe_factors, factors_to_index, generate_items, index_to_factors,
    index_to_note, latent_dicts, melody_pitches, music21_reference_tokens, note_to_index, token_names,
    tokens_from_factors, vocabulary)
from tfmusic.data.dmelodies.layout import DEFAULT_NUM_SHARDS, parse_num_shards, plan_shards, shard_name
from tfmusic.data.dmelodies.pipeline import LOADER_ORDER_NOTE, GenerateDMelodies, generate, make_shard
from tfmusic.data.dmelodies.reader import load, read_items, read_metadata
from tfmusic.data.dmelodies.splits import SPLIT_FRACTIONS, SPLITS, split_bounds, split_indices, split_permutation
from tfmusic.data.schema import dmelodies_examples_bytes as encode_examples

__all__ = [name for name in dir() if not name.startswith("_")]
