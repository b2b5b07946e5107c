"""dMelodies closed-form generator: factor mapping, vocabulary, tokens vs music21, decoding, splits, records."""

import itertools

import numpy as np
import pytest

from tfmusic.data import dmelodies as dm
from tfmusic.data import schema

SPEC_VOCAB = (
    "2 C4, 3 E4, 4 G4, 5 F4, 6 A4, 7 C5, 8 B4, 9 D5, 10 E-4, 11 G#4, 12 F#4, 13 B-4, 14 E5, 15 G5, 16 F5, "
    "17 A5, 18 C6, 19 B5, 20 D6, 21 E-5, 22 G#5, 23 F#5, 24 B-5, 25 E6, 26 G6, 27 F6, 28 A6, 29 C7, 30 B6, "
    "31 D7, 32 E-6, 33 G#6, 34 F#6, 35 B-6, 36 C#4, 37 C#5, 38 C#6, 39 C#7, 40 E-7, 41 D4, 42 E7, 43 F7, "
    "44 F#7, 45 G7, 46 G#7, 47 A7, 48 B-7, 49 B7, 50 C8, 51 C#8")


@pytest.fixture(scope="module")
def full():
    """Every item of the dataset: (tokens, factors)."""
    return dm.generate_items(np.arange(dm.NUM_ITEMS))


def test_sizes_and_mapping_round_trip():
    assert dm.NUM_ITEMS == 1_354_752 == 12 * 3 * 3 * 28 * 28 * 2 ** 4
    assert len(dm.RHYTHMS) == 28 and (dm.RHYTHMS.sum(axis=1) == 6).all()
    idx = np.arange(dm.NUM_ITEMS)
    factors = dm.index_to_factors(idx)
    assert factors.shape == (dm.NUM_ITEMS, 9)
    np.testing.assert_array_equal(dm.factors_to_index(factors), idx)
    # product order: tonic slowest, arpeggio of chord 4 fastest (checked against itertools.product)
    product = itertools.product(*(range(s) for s in dm.FACTOR_SIZES))
    head = np.asarray(list(itertools.islice(product, 5000)))
    np.testing.assert_array_equal(factors[:5000], head)
    np.testing.assert_array_equal(factors[-1], np.asarray(dm.FACTOR_SIZES) - 1)
    with pytest.raises(ValueError, match="indices must lie"):
        dm.index_to_factors([dm.NUM_ITEMS])
    with pytest.raises(ValueError, match="'octave' = 3"):
        dm.factors_to_index([[0, 3, 0, 0, 0, 0, 0, 0, 0]])


def test_vocabulary_matches_spec_table():
    vocab = dm.vocabulary()
    assert len(vocab) == dm.VOCAB_SIZE == 52
    assert vocab[:2] == ("__", "rest")
    expected = {int(i): name for i, name in (p.split() for p in SPEC_VOCAB.split(", "))}
    assert {i: vocab[i] for i in range(2, 52)} == expected
    assert dm.note_to_index()["C#8"] == 51 and dm.index_to_note()[10] == "E-4"


def test_vocabulary_is_first_appearance_order_over_full_product(full):
    tokens, _ = full
    notes = tokens.reshape(-1)
    notes = notes[notes >= 2]
    running_max = np.maximum.accumulate(notes)
    assert running_max[0] == 2 and running_max[-1] == 51
    assert (np.diff(running_max) <= 1).all()  # each new id appears right after all smaller ids


def test_spelling_matches_music21():
    from music21 import pitch

    from tfmusic.music.notes import midi_to_name

    for midi in range(60, 110):
        assert midi_to_name(midi) == pitch.Pitch(midi=midi).nameWithOctave


def test_rows_0_1_2999():
    tokens, factors = dm.generate_items([0, 1, 2999])
    r = dm.REST_ID
    np.testing.assert_array_equal(tokens[0], [2, 3, 4, 5, 6, 7, r, r, 4, 8, 9, 2, 3, 4, r, r])
    names = dm.token_names(tokens)
    assert names[0] == ["C4", "E4", "G4", "F4", "A4", "C5", "rest", "rest",
                        "G4", "B4", "D5", "C4", "E4", "G4", "rest", "rest"]
    assert names[1][-5:] == ["G4", "E4", "C4", "rest", "rest"]
    np.testing.assert_array_equal(factors[2], [0, 0, 0, 6, 19, 0, 1, 1, 1])
    assert dm.describe_factors(factors[2]) == "C 4 major r6/19 up,down,down,down"
    # rhythm 6 = positions 0,1,2,4,5,6 in bar 1
    assert [i for i, t in enumerate(names[2][:8]) if t != "rest"] == [0, 1, 2, 4, 5, 6]


def test_rows_are_12_notes_and_4_rests_never_hold(full):
    tokens, _ = full
    assert tokens.dtype == np.int32 and tokens.shape == (dm.NUM_ITEMS, 16)
    assert ((tokens >= 2).sum(axis=1) == 12).all()
    assert ((tokens == dm.REST_ID).sum(axis=1) == 4).all()
    assert not (tokens == dm.HOLD_ID).any()
    assert tokens.max() == 51


def test_random_sample_matches_music21_generation():
    rng = np.random.default_rng(1234)
    sample = np.sort(rng.choice(dm.NUM_ITEMS, size=300, replace=False))
    sample = np.concatenate([[0, 1, 2999, dm.NUM_ITEMS - 1], sample])
    # factor rows from itertools.product itself (independent of the closed-form mapping)
    wanted = {int(i) for i in sample}
    rows = {i: row for i, row in enumerate(itertools.product(*(range(s) for s in dm.FACTOR_SIZES))) if i in wanted}
    tokens, factors = dm.generate_items(sample)
    names = dm.token_names(tokens)
    n2i = dm.note_to_index()
    for k, i in enumerate(sample.tolist()):
        assert tuple(factors[k]) == rows[i]
        ref = dm.music21_reference_tokens(rows[i])
        assert names[k] == ref, f"item {i}"
        assert [n2i[t] for t in ref] == tokens[k].tolist()


def test_decode_factors_recovers_every_item(full):
    tokens, factors = full
    np.testing.assert_array_equal(dm.decode_factors(tokens), factors)


def test_decode_factors_undecidable_cases():
    tokens, factors = dm.generate_items([0, 2999])
    broken = tokens.copy()
    broken[0, 0] = dm.REST_ID  # 11 notes: rhythm bar 1 and arpeggios undecidable
    broken[1, 8:] = dm.HOLD_ID  # bar 2 holds only: 6 notes
    dec = dm.decode_factors(broken)
    assert dec[0, 3] == -1 and (dec[0, 5:] == -1).all() and dec[0, 4] == factors[0, 4]
    assert dec[1, 4] == -1 and (dec[1, 5:] == -1).all() and (dec[1, :4] == factors[1, :4]).all()
    slur = tokens.copy()
    slur[tokens == dm.REST_ID] = 61  # model outputs >= 52 are read as slur (no onset), not as notes
    np.testing.assert_array_equal(dm.decode_factors(slur), factors)
    slur[:, 0] = 61  # ...so a slur over a note position removes that onset
    assert (dm.decode_factors(slur)[:, 3] == -1).all()
    with pytest.raises(ValueError, match="shape"):
        dm.decode_factors(tokens[:, :8])


def test_index_shuffle_equals_reference_row_shuffle():
    n = 1000
    for seed in (0, 1, 2):
        rows = np.stack([np.arange(n)] + [np.arange(n) * k for k in range(2, 26)], axis=1)  # (n, 25)
        np.random.seed(seed)
        np.random.shuffle(rows)
        np.testing.assert_array_equal(dm.split_permutation(seed, n), rows[:, 0])


def test_split_sizes_and_membership():
    splits = dm.split_indices(0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 948_326, "validation": 270_950, "test": 135_476}
    assert -(-len(splits["train"]) // 512) == 1853
    allidx = np.concatenate(list(splits.values()))
    np.testing.assert_array_equal(np.sort(allidx), np.arange(dm.NUM_ITEMS))
    assert not np.array_equal(dm.split_indices(1)["train"][:100], splits["train"][:100])
    small = dm.split_indices(0, limit=3000)
    for name in dm.SPLITS:
        np.testing.assert_array_equal(small[name], splits[name][splits[name] < 3000])
    with pytest.raises(ValueError, match="limit"):
        dm.split_indices(0, limit=0)


def test_encode_examples_matches_protobuf_and_parses():
    import tensorflow as tf

    idx = np.asarray([0, 1, 127, 128, 16_383, 16_384, 2999, dm.NUM_ITEMS - 1])
    tokens, factors = dm.generate_items(idx)
    records = dm.encode_examples(idx, tokens, factors)
    for i, t, f, rec in zip(idx, tokens, factors, records):
        assert rec == schema.dmelodies_example(int(i), t, f).SerializeToString(deterministic=True)
    parsed = tf.io.parse_example(tf.constant(records), schema.dmelodies_parse_spec())
    np.testing.assert_array_equal(parsed["index"].numpy(), idx)
    np.testing.assert_array_equal(parsed["tokens"].numpy(), tokens)
    np.testing.assert_array_equal(parsed["factors"].numpy(), factors)
    with pytest.raises(ValueError, match="0..127"):
        dm.encode_examples([0], tokens[:1] + 200, factors[:1])


def test_parse_num_shards_and_plan():
    assert dm.parse_num_shards(None) == {"train": 16, "validation": 4, "test": 2}
    assert dm.parse_num_shards("8,2,1") == {"train": 8, "validation": 2, "test": 1}
    assert dm.parse_num_shards("test=3") == {"train": 16, "validation": 4, "test": 3}
    for bad in ("8,2", "train=0,validation=1,test=1", "foo=1"):
        with pytest.raises(ValueError, match="--num-shards"):
            dm.parse_num_shards(bad)
    plan = dm.plan_shards(0, {"train": 16, "validation": 4, "test": 2}, None)
    assert len(plan) == 22
    sizes = {s: sum(p[4] - p[3] for p in plan if p[0] == s) for s in dm.SPLITS}
    assert sizes == {"train": 948_326, "validation": 270_950, "test": 135_476}


def test_tfrecord_framing_is_readable_by_tensorflow(tmp_path):
    import tensorflow as tf

    from tfmusic.data.tfds_metadata import write_tfrecord

    records = [b"", b"a", b"hello world" * 50]
    path = tmp_path / "x.tfrecord"
    write_tfrecord(path, records)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == records
