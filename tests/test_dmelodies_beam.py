"""dMelodies Beam job on a small index range: shards, counts, byte-identical re-runs, TFDS, tf.data, CLI exports."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tfmusic.cli.main import main as tfmusic_main
from tfmusic.data import dmelodies as dm

LIMIT = 3000
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("dmelodies")
    rc = tfmusic_main(["dmelodies", "generate", "--out", str(out), "--limit", str(LIMIT), "--quiet",
                       "--num-shards", "4,2,2",
                       "--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert rc == 0
    return out


def _read_all(path: Path):
    import tensorflow as tf

    from tfmusic.data import schema

    records = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(str(path))])
    ex = tf.io.parse_example(records, schema.dmelodies_parse_spec())
    return ex["index"].numpy(), ex["tokens"].numpy(), ex["factors"].numpy()


def test_outputs_counts_and_order(generated):
    names = sorted(p.name for p in generated.iterdir())
    assert names == sorted(
        [f"dmelodies-train.tfrecord-{i:05d}-of-00004" for i in range(4)]
        + [f"dmelodies-validation.tfrecord-{i:05d}-of-00002" for i in range(2)]
        + [f"dmelodies-test.tfrecord-{i:05d}-of-00002" for i in range(2)]
        + ["dataset_info.json", "features.json", "metadata.json", "vocabulary.json"])
    meta = dm.read_metadata(generated)
    expected = dm.split_indices(0, limit=LIMIT)
    assert meta["num_items"] == LIMIT and meta["seed"] == 0 and meta["limit"] == LIMIT
    assert meta["factor_names"] == list(dm.FACTOR_NAMES) and meta["factor_sizes"] == list(dm.FACTOR_SIZES)
    assert meta["version"] == dm.VERSION and "generation_seconds" not in meta  # output bytes stay reproducible
    for split in dm.SPLITS:
        c = meta["counts"][split]
        assert c["in"] == c["out"] == c["expected"] == len(expected[split]) and c["rejected"] == {}
    assert sum(c["out"] for c in meta["counts"].values()) == LIMIT
    vocab = json.loads((generated / "vocabulary.json").read_text())
    assert vocab["note2index"] == dm.note_to_index() and vocab["index2note"]["51"] == "C#8"
    # each split's shards, read in order, hold exactly the reference loader's shuffled order
    for split in dm.SPLITS:
        files = sorted(generated.glob(f"dmelodies-{split}.tfrecord-*"))
        parts = [_read_all(f) for f in files]
        index = np.concatenate([p[0] for p in parts])
        np.testing.assert_array_equal(index, expected[split])
        tokens, factors = dm.generate_items(index)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), tokens)
        np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), factors)
        assert [s["items_out"] for s in meta["shards"] if s["split"] == split] == [len(p[0]) for p in parts]


def test_rerun_is_byte_identical_across_runners(generated):
    before = {p.name: p.read_bytes() for p in generated.glob("dmelodies-*")}
    hashes = [s["sha256"] for s in dm.read_metadata(generated)["shards"]]
    # second run: the thin Beam entry point, default in-process runner, same directory
    sys.path.insert(0, str(ROOT / "beam_pipelines"))
    try:
        import importlib

        entry = importlib.import_module("dmelodies")
        assert entry.main(["--out", str(generated), "--limit", str(LIMIT), "--num-shards", "4,2,2", "--quiet"]) == 0
    finally:
        sys.path.remove(str(ROOT / "beam_pipelines"))
        sys.modules.pop("dmelodies", None)
    after = {p.name: p.read_bytes() for p in generated.glob("dmelodies-*")}
    assert before.keys() == after.keys() and all(before[k] == after[k] for k in before)
    assert [s["sha256"] for s in dm.read_metadata(generated)["shards"]] == hashes


def test_tfds_builder_from_directory(generated):
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(generated))
    expected = dm.split_indices(0, limit=LIMIT)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {k: len(v) for k, v in expected.items()}
    assert builder.info.name == "dmelodies"
    ds = builder.as_dataset(split="validation", shuffle_files=False)
    rows = list(tfds.as_numpy(ds.take(5)))
    index = np.asarray([r["index"] for r in rows])
    np.testing.assert_array_equal(index, expected["validation"][:5])
    tokens, factors = dm.generate_items(index)
    np.testing.assert_array_equal(np.stack([r["tokens"] for r in rows]), tokens)
    np.testing.assert_array_equal(np.stack([r["factors"] for r in rows]), factors)


def test_load_tf_data(generated):
    import tensorflow as tf

    expected = dm.split_indices(0, limit=LIMIT)["train"]
    ds = dm.load(generated, "train", batch_size=512)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [512] * 4 + [len(expected) - 4 * 512]
    tokens, factors = batches[0]
    assert tokens.dtype == tf.int32 and factors.dtype == tf.int32
    assert tokens.shape[1:] == (16,) and factors.shape[1:] == (9,)
    all_tokens = np.concatenate([b[0].numpy() for b in batches])
    np.testing.assert_array_equal(all_tokens, dm.generate_items(expected)[0])

    def order(**kw):
        return np.concatenate([b[2].numpy() for b in dm.load(generated, "train", 256, with_index=True, **kw)])

    shuffled = order(shuffle=True, seed=7, shuffle_buffer=1000)
    assert not np.array_equal(shuffled, expected)
    np.testing.assert_array_equal(np.sort(shuffled), np.sort(expected))
    np.testing.assert_array_equal(shuffled, order(shuffle=True, seed=7, shuffle_buffer=1000))
    np.testing.assert_array_equal(np.sort(order(deterministic=False)), np.sort(expected))
    assert next(iter(dm.load(generated, "test", 64, drop_remainder=True, repeat=True)))[0].shape[0] == 64
    with pytest.raises(ValueError, match="unknown split"):
        dm.load(generated, "valid", 8)
    with pytest.raises(FileNotFoundError, match="no metadata.json"):
        dm.load(generated.parent, "train", 8)  # shards without metadata (e.g. a killed run) are not a dataset


def test_info_cli(generated, capsys):
    assert tfmusic_main(["dmelodies", "info", str(generated)]) == 0
    out = capsys.readouterr().out
    counts = dm.read_metadata(generated)["counts"]
    assert f"{counts['train']['out']:,} items in 4 shards" in out
    assert "vocabulary 52 tokens" in out and "rhythm_bar1=28" in out
    assert tfmusic_main(["dmelodies", "info", str(generated.parent)]) == 2
    assert "metadata.json" in capsys.readouterr().err


def test_export_midi_from_data_parses_back(generated, tmp_path):
    from music21 import converter

    indices = [0, 1, 2999]
    assert tfmusic_main(["dmelodies", "export-midi", "--data", str(generated), "--indices", "0,1,2999",
                         "--out", str(tmp_path), "--png"]) == 0
    assert (tmp_path / "dmelodies_pianoroll.png").stat().st_size > 10_000
    tokens, _ = dm.generate_items(indices)
    for i, names in zip(indices, dm.token_names(tokens)):
        expected = [(t, k * 0.5) for k, t in enumerate(names) if t != "rest"]
        xml = converter.parse(tmp_path / f"dmelodies_{i:07d}.musicxml").flatten().notes
        assert [(n.pitch.nameWithOctave, float(n.offset)) for n in xml] == expected
        assert all(float(n.quarterLength) == 0.5 for n in xml)
        mid = converter.parse(tmp_path / f"dmelodies_{i:07d}.mid").flatten().notes
        assert [(n.pitch.midi, float(n.offset)) for n in mid] == \
            [(_midi(t), o) for t, o in expected]
    assert tfmusic_main(["dmelodies", "export-midi", "--data", str(generated), "--indices", "5000",
                         "--out", str(tmp_path)]) == 2


def _midi(name):
    from music21 import pitch

    return pitch.Pitch(name).midi


def test_export_npz(tmp_path):
    path = tmp_path / "dmelodies.npz"
    assert tfmusic_main(["dmelodies", "export-npz", "--out", str(path), "--limit", "1000"]) == 0
    data = np.load(path, allow_pickle=True)
    assert set(data.files) == {"score_array", "latent_array", "note2index_dict", "index2note_dict",
                               "latent_dicts", "metadata"}
    assert data["score_array"].dtype == np.int32 and data["score_array"].shape == (1000, 16)
    assert data["latent_array"].dtype == np.int32 and data["latent_array"].shape == (1000, 9)
    tokens, factors = dm.generate_items(np.arange(1000))
    np.testing.assert_array_equal(data["score_array"], tokens)
    np.testing.assert_array_equal(data["latent_array"], factors)
    assert data["note2index_dict"].item()["E-4"] == 10 and data["index2note_dict"].item()[1] == "rest"
    assert data["latent_dicts"].item()["rhythm_bar1"][6] == [1, 1, 1, 0, 1, 1, 1, 0]
    meta = data["metadata"].item()
    assert meta["version"] == 1 and tuple(meta["latents_names"]) == dm.FACTOR_NAMES


def test_regenerating_with_other_shard_counts_replaces_old_shards(tmp_path):
    dm.generate(tmp_path, limit=300, num_shards={"train": 3, "validation": 2, "test": 1}, progress=False)
    (tmp_path / "unrelated.txt").write_text("kept")
    meta = dm.generate(tmp_path, limit=300, num_shards={"train": 1, "validation": 1, "test": 1}, progress=False)
    shards = sorted(p.name for p in tmp_path.glob("dmelodies-*"))
    assert shards == [f"dmelodies-{s}.tfrecord-00000-of-00001" for s in ("test", "train", "validation")]
    assert (tmp_path / "unrelated.txt").exists() and meta["num_items"] == 300
    with pytest.raises(ValueError, match="not a directory"):
        dm.generate(tmp_path / "unrelated.txt", limit=10)
