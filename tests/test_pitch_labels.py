"""Multi-pitch labels: a known MIDI note lands on the right frames and key, through preprocessing
into the stems records and out of tf.data; songs without MIDI (and version-1 datasets) read with
pitch masked."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
import yaml

from tfmusic.data.stems import pitch

SR = 44100
A2 = 45  # key 24
# Note from 1.0 s to 1.5 s. center=False frame f is centred on sample f*1024 + 2048: the first centre
# at or after 44100 is frame 42 (45056), the first at or after 66150 is frame 63 (66560).
ON_FRAMES = range(42, 63)


def _midi(tracks) -> bytes:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    for k, (is_drum, notes) in enumerate(tracks, 1):
        inst = pretty_midi.Instrument(program=33, is_drum=is_drum, name=f"STEM_{k:02d} x")
        inst.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for s, e, p in notes]
        pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def test_known_note_lands_on_its_frames_and_key():
    roll = pitch.notes_to_roll([(1.0, 1.5, A2)], 100, SR)
    assert roll.shape == (100, 88)
    assert np.flatnonzero(roll[:, A2 - 21]).tolist() == list(ON_FRAMES)
    assert roll.sum() == len(ON_FRAMES)
    centred = pitch.notes_to_roll([(1.0, 1.5, A2)], 100, SR, center=True)  # Separator frames: centre f*1024
    assert np.flatnonzero(centred[:, 24]).tolist() == list(range(44, 65))
    assert pitch.notes_to_roll([(0.0, 1.0, 20), (0.0, 1.0, 109)], 10, SR).sum() == 0  # outside A0..C8
    assert np.array_equal(pitch.unpack(pitch.pack(roll), 100), roll)


def test_tf_unpack_matches_numpy_and_masks_empty():
    import tensorflow as tf

    roll = np.random.default_rng(0).random((7, 88)) < 0.3
    got, known = pitch.tf_unpack(tf.constant(pitch.pack(roll)), 7)
    assert np.array_equal(got.numpy().astype(bool), roll) and float(known) == 1.0
    got, known = pitch.tf_unpack(tf.constant(b""), 7)
    assert float(known) == 0.0 and not got.numpy().any()


def _song(root, name: str, midi: bool) -> None:
    """A 4 s MedleyDB-style song: bass (MIDI track 0) and drums (track 1), optional MIDI file."""
    folder = root / name
    (folder / f"{name}_STEMS").mkdir(parents=True)
    t = np.arange(4 * SR) / SR
    bass = (0.3 * np.sin(2 * np.pi * 110 * t) * ((t >= 1.0) & (t < 1.5))).astype(np.float32)
    drums = (0.2 * np.random.default_rng(1).standard_normal(t.size) * (t < 0.5)).astype(np.float32)
    stems = {}
    for k, (label, audio) in enumerate((("electric bass", bass), ("drum set", drums)), 1):
        fname = f"{name}_STEM_{k:02d}.wav"
        sf.write(folder / f"{name}_STEMS" / fname, np.stack([audio, audio], 1), SR, subtype="FLOAT")
        stems[f"S{k:02d}"] = {"filename": fname, "instrument": label, "midi_track": k - 1}
    sf.write(folder / f"{name}_MIX.wav", np.stack([bass + drums] * 2, 1), SR, subtype="FLOAT")
    meta = {"mix_filename": f"{name}_MIX.wav", "stem_dir": f"{name}_STEMS", "stems": stems}
    if midi:
        (folder / f"{name}.mid").write_bytes(_midi([(False, [(1.0, 1.5, A2)]), (True, [(0.0, 0.1, 36)])]))
        meta["midi_filename"] = f"{name}.mid"
    (folder / f"{name}_METADATA.yaml").write_text(yaml.safe_dump(meta))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from tfmusic.data.stems.preprocess import preprocess

    root = tmp_path_factory.mktemp("pitch_songs")
    _song(root / "in", "WithMidi", midi=True)
    _song(root / "in", "NoMidi", midi=False)
    out = root / "stems"
    manifest = preprocess(root / "in", out, layout="medleydb", fractions=(1.0, 0.0, 0.0), progress=False)
    return out, manifest


def _records(out):
    import tensorflow as tf

    from tfmusic.data import schema
    from tfmusic.data.stems.taxonomy import INSTRUMENTS

    files = sorted(str(p) for p in out.glob("stems-train.tfrecord-*"))
    spec = schema.stems_parse_spec(INSTRUMENTS)
    return {r["song_id"].numpy().decode(): r for r in
            (tf.io.parse_single_example(x, spec) for x in tf.data.TFRecordDataset(files))}


def test_preprocess_stores_aligned_pitch_labels(dataset):
    out, manifest = dataset
    assert manifest["version"] == 2 and manifest["counts"]["pitch_labelled_songs"] == 1
    assert manifest["songs"]["WithMidi"]["pitch_instruments"] == [
        "acoustic_guitar", "bass", "electric_guitar", "other", "piano", "vocals"]
    assert manifest["songs"]["NoMidi"]["pitch_instruments"] == []
    recs = _records(out)
    frames = int(recs["WithMidi"]["frames"])
    bass = pitch.unpack(recs["WithMidi"]["pitch/bass"].numpy(), frames)
    assert np.flatnonzero(bass.any(axis=1)).tolist() == list(ON_FRAMES)
    assert np.flatnonzero(bass.any(axis=0)).tolist() == [A2 - 21]
    assert not pitch.unpack(recs["WithMidi"]["pitch/piano"].numpy(), frames).any()  # absent: known silent
    assert recs["WithMidi"]["pitch/drums"].numpy() == b""  # drums: no labels
    assert all(recs["NoMidi"][f"pitch/{i}"].numpy() == b"" for i in ("bass", "piano"))  # no MIDI: none


def test_dataset_yields_pitch_and_masks_songs_without_labels(dataset):
    from tfmusic.data.stems.dataset import make_eval_dataset

    out, _ = dataset
    ds = make_eval_dataset(out, "train", "bass", 1, segment_seconds=4.0, pitch=True)
    got = {}
    for mix, tgt, act, roll, known in ds:
        assert roll.shape[1:] == (act.shape[1], 88)
        got.setdefault(float(known[0]), roll[0].numpy())  # each song's first crop (0 .. 4 s)
    assert set(got) == {0.0, 1.0}
    assert np.flatnonzero(got[1.0].any(axis=1)).tolist() == list(ON_FRAMES)
    assert not got[0.0].any()


def test_version_1_dataset_still_reads(dataset, tmp_path):
    """A v1 dataset (manifest version 1, records without pitch features) reads as before, and with
    ``pitch=True`` every example is masked."""
    import shutil

    from tfmusic.data.stems.dataset import make_dataset

    out, _ = dataset
    old = tmp_path / "v1"
    shutil.copytree(out, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    # rewrite the shard without any pitch/* feature, as version 1 wrote it
    import tensorflow as tf

    for shard in old.glob("stems-train.tfrecord-*"):
        records = []
        for raw in tf.data.TFRecordDataset(str(shard)):
            ex = tf.train.Example.FromString(raw.numpy())
            for key in [k for k in ex.features.feature if k.startswith("pitch/")]:
                del ex.features.feature[key]
            records.append(ex.SerializeToString())
        with tf.io.TFRecordWriter(str(shard)) as w:
            for r in records:
                w.write(r)
    plain = next(iter(make_dataset(old, "train", "bass", 2, segment_seconds=3.0, seed=0, deterministic=True)))
    assert len(plain) == 3
    batch = next(iter(make_dataset(old, "train", "bass", 2, segment_seconds=3.0, seed=0, deterministic=True,
                                   pitch=True)))
    assert len(batch) == 5 and not batch[4].numpy().any() and not batch[3].numpy().any()


def test_pitch_threshold_is_chosen_on_a_split_and_stored_in_the_model(dataset, tmp_path):
    """After training, `tfmusic train iass_pitch` calls calibrate_pitch_threshold: the best grid threshold
    on the split's labelled segments goes into model.keras and pitch_threshold.json."""
    import json

    import keras
    import tensorflow as tf

    from tfmusic.models.files import load_keras_file
    from tfmusic.training.separation_pitch import THRESHOLDS, PitchSeparationConfig, PitchSeparationTask
    from tfmusic.training.task import TaskContext

    out, _ = dataset
    keras.utils.set_random_seed(0)
    task = PitchSeparationTask(PitchSeparationConfig(target="bass", data_dir=str(out), segment_seconds=4.0,
                                                     threshold_split="train",
                                                     model_kwargs={"max_bin": 729, "pitch_filters": 4}))
    task.bind(TaskContext(strategy=tf.distribute.get_strategy(), batch_size=1))
    task.build()
    task.model.activity.out.bias.assign(np.full(1, 20.0, np.float32))  # gate open
    path = tmp_path / "model.keras"
    task.model.save(path)
    record = task.calibrate_pitch_threshold(str(path))
    assert record["threshold"] in THRESHOLDS and record["f1"] >= record["f1_at_0.5"]
    assert record["on_cells"] == len(ON_FRAMES)  # only the song with a MIDI file is labelled
    assert json.loads((tmp_path / "pitch_threshold.json").read_text()) == record
    assert load_keras_file(path).pitch_threshold == record["threshold"]
