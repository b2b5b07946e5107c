"""Preprocessing (bad input reported, counts add up, TFRecord segments) and the tf.data pipelines.

One preprocessing run over a MedleyDB-style fixture tree with good songs and one defect of each
kind feeds every test here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tfmusic.audio.io import write_audio
from tfmusic.data.stems import activity, splits
from tfmusic.data.stems.augment import Augmentation
from tfmusic.data.stems.preprocess import PreprocessConfig, preprocess, segment_offsets

SR = 44100
SECONDS = 3.0


def signal(kind: str, seconds: float = SECONDS, sr: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    if kind == "bass":
        x = 0.3 * np.sin(2 * np.pi * 70 * t)
    elif kind == "drums":
        x = 0.2 * rng.standard_normal(t.size) * (np.mod(t, 0.5) < 0.1)
    elif kind == "vocals":  # sings only in the second half
        x = np.where(t > seconds / 2, 0.25 * np.sin(2 * np.pi * 440 * t), 0.0)
    else:
        x = 0.1 * np.sin(2 * np.pi * 1000 * t)
    return np.stack([x, 0.8 * x]).astype(np.float32)


def write_song(root: Path, name: str, stems: dict[str, tuple[str, np.ndarray | bytes | None, int]],
               mix: np.ndarray | bytes | None = "sum", mix_sr: int = SR) -> None:
    """stems: file key -> (MedleyDB label, audio | raw bytes | None (missing file), rate)."""
    d = root / name
    (d / f"{name}_STEMS").mkdir(parents=True)
    meta_stems = {}
    total = None
    for i, (key, (label, audio, sr)) in enumerate(stems.items(), 1):
        fname = f"{name}_STEM_{i:02d}.wav"
        path = d / f"{name}_STEMS" / fname
        if isinstance(audio, bytes):
            path.write_bytes(audio)
        elif isinstance(audio, np.ndarray):
            if np.isnan(audio).any():
                sf.write(str(path), audio.T, sr, subtype="FLOAT")
            else:
                write_audio(path, audio, sr)
            if sr == SR and audio.shape[-1] == int(SECONDS * SR) and not np.isnan(audio).any():
                total = audio if total is None else total + audio
        meta_stems[f"S{i:02d}"] = {"filename": fname, "instrument": label}
    if isinstance(mix, str):
        mix = total
    if isinstance(mix, bytes):
        (d / f"{name}_MIX.wav").write_bytes(mix)
    elif mix is not None:
        write_audio(d / f"{name}_MIX.wav", mix, mix_sr)
    meta = {"artist": name, "title": "t", "origin": "test", "stem_dir": f"{name}_STEMS", "stems": meta_stems}
    if mix is not None:
        meta["mix_filename"] = f"{name}_MIX.wav"
    (d / f"{name}_METADATA.yaml").write_text(yaml.safe_dump(meta))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("medleydb")
    good = {"b": ("electric bass", signal("bass"), SR), "d": ("drum set", signal("drums", seed=1), SR),
            "v": ("female singer", signal("vocals"), SR)}
    for k in range(4):
        write_song(root, f"Good{k}", good)
    # 22.05 kHz song: resampled to 44.1 kHz
    write_song(root, "LowRate", {k: (lab, signal(k2, sr=22050), 22050) for k, (lab, _, _), k2
                                 in zip("bdv", good.values(), ("bass", "drums", "vocals"))}, mix=None)
    # stem-level defects inside otherwise good songs
    write_song(root, "SilentStem", {**good, "p": ("piano", np.zeros((2, int(SECONDS * SR)), np.float32), SR)})
    write_song(root, "MissingStem", {**good, "g": ("acoustic guitar", None, SR)})
    nan = signal("other")
    nan[0, 100] = np.nan
    write_song(root, "NanStem", {**good, "o": ("violin", nan, SR)})
    write_song(root, "CorruptStem", {**good, "x": ("piano", b"RIFF....WAVEfmt garbage", SR)})
    write_song(root, "UnknownLabel", {**good, "u": ("laser harp", signal("other"), SR)})
    # song-level defects
    write_song(root, "RateMismatch", {"b": ("electric bass", signal("bass", sr=22050), 22050)},
               mix=signal("bass"), mix_sr=SR)
    write_song(root, "LengthMismatch", {"b": ("electric bass", signal("bass", seconds=2.0), SR),
                                        "d": ("drum set", signal("drums"), SR)}, mix=None)
    write_song(root, "CorruptMix", good, mix=b"not a wav file at all")
    write_song(root, "ChannelMismatch", {"b": ("electric bass", signal("bass")[:1], SR),
                                         "d": ("drum set", signal("drums"), SR)}, mix=None)
    out = tmp_path_factory.mktemp("tfrecords")
    config = PreprocessConfig(segment_seconds=2.0)
    manifest = preprocess(root, out, layout="auto", seed=0, fractions=(0.5, 0.25, 0.25), config=config,
                          unknown_policy="reject", progress=False)
    return root, out, manifest


def test_counts_add_up_and_every_reject_is_reported(prepared):
    _, out, manifest = prepared
    c = manifest["counts"]
    assert c["songs"] == {"in": 14, "written": 8, "rejected": 6}
    assert c["stems"]["in"] == c["stems"]["written"] + c["stems"]["silent"] + c["stems"]["rejected"]
    assert c["stems"]["silent"] == 1  # SilentStem's piano: an absent instrument, not an error
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    by_song = {}
    for r in rejects:
        by_song.setdefault(r["song_id"], []).append(r)
    expect = {
        "MissingStem": ("stem", "missing stem file"),
        # an unusable stem rejects the whole song: its mixture still holds that instrument
        "NanStem": ("song", "NaN/Inf"), "CorruptStem": ("song", "unreadable audio"),
        "UnknownLabel": ("stem", "unknown instrument label 'laser harp'"),
        "RateMismatch": ("song", "sample rate mismatch"), "LengthMismatch": ("song", "length mismatch"),
        "CorruptMix": ("song", "mixture: unreadable audio"), "ChannelMismatch": ("song", "channel count mismatch"),
    }
    for song, (kind, reason) in expect.items():
        (r,) = [r for r in by_song[song] if r["kind"] == kind]
        assert reason in r["reason"], (song, r)
        assert r["file"]
    assert [r["file"] for r in by_song["NanStem"]][0].endswith("NanStem_STEM_04.wav")
    assert sum(r["kind"] == "song" for r in rejects) == c["songs"]["rejected"]
    written_songs = sum(1 for s in manifest["songs"].values() if s["status"] == "written")
    assert written_songs == 8 and "SilentStem" not in by_song
    assert manifest["songs"]["SilentStem"]["instruments"] == ["bass", "drums", "vocals"]
    assert manifest["songs"]["SilentStem"]["silent_stems"][0].endswith("SilentStem_STEM_04.wav")
    assert manifest["songs"]["NanStem"]["status"] == manifest["songs"]["CorruptStem"]["status"] == "rejected"
    assert manifest["songs"]["LowRate"]["source_sample_rate"] == 22050


def test_splits_are_song_level_and_seeded(prepared):
    _, out, manifest = prepared
    assert set(manifest["song_splits"].values()) == {"train", "valid", "test"}
    assert manifest["song_splits"] == splits.assign_splits(manifest["song_splits"], 0, (0.5, 0.25, 0.25))
    total = 0
    for split, info in manifest["splits"].items():
        total += info["segments"]
        assert info["songs"] == sum(1 for s in manifest["songs"].values()
                                    if s["split"] == split and s["status"] == "written")
        for f in info["files"]:
            assert (out / f).is_file()
    assert total == manifest["counts"]["segments"] == 8 * len(segment_offsets(int(SECONDS * SR),
                                                                                PreprocessConfig(segment_seconds=2.0)))
    vocals = manifest["splits"]["train"]["instruments"]["vocals"]
    assert 0 < vocals["active_seconds"] < vocals["seconds"]  # sings only in the second half


def test_records_hold_aligned_pcm_and_labels(prepared):
    import tensorflow as tf

    from tfmusic.data import schema
    from tfmusic.data.stems.taxonomy import INSTRUMENTS

    root, out, manifest = prepared
    split = manifest["songs"]["Good0"]["split"]
    files = [str(out / f) for f in manifest["splits"][split]["files"]]
    spec = schema.stems_parse_spec(INSTRUMENTS)
    seen = 0
    for raw in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(raw, spec)
        if ex["song_id"].numpy() != b"Good0":
            continue
        seen += 1
        n, ch, off = int(ex["num_samples"]), int(ex["channels"]), int(ex["offset"])
        assert (n, ch, int(ex["sample_rate"])) == (88200, 2, SR) and off % activity.HOP == 0
        assert int(ex["frames"]) == activity.num_frames(n) == 83
        bass = np.frombuffer(ex["stem/bass"].numpy(), "<i2").reshape(ch, n) / 32768.0
        valid = int(ex["valid_samples"])
        np.testing.assert_allclose(bass[:, :valid], signal("bass")[:, off:off + valid], atol=5e-4)  # PCM_16 file
        assert ex["stem/piano"].numpy() == b"" and ex["activity/piano"].numpy() == b""
        conf = np.frombuffer(ex["activity/vocals"].numpy(), "<f4")
        full = activity.song_confidence(signal("vocals"))
        np.testing.assert_allclose(conf, activity.fit_frames(full[off // activity.HOP:], 83), atol=1e-4)
    assert seen == 2


def test_make_dataset_shapes_and_determinism(prepared):
    from tfmusic.data.stems.dataset import make_dataset

    _, out, _ = prepared
    kwargs = dict(segment_seconds=1.0, seed=5, deterministic=True, samples_per_epoch=6)
    ds = make_dataset(out, "train", "vocals", 3, **kwargs)
    assert [tuple(s.shape) for s in ds.element_spec] == [(3, 1, SR), (3, 1, SR), (3, 40)]  # static for the trainer
    first = [[t.numpy() for t in b] for b in ds]
    again = [[t.numpy() for t in b] for b in make_dataset(out, "train", "vocals", 3, **kwargs)]
    assert len(first) == 2
    mix, tgt, act = first[0]
    frames = 1 + (SR - 4096) // 1024
    assert mix.shape == tgt.shape == (3, 1, SR) and act.shape == (3, frames) and mix.dtype == np.float32
    assert set(np.unique(act)) <= {0.0, 1.0}
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    second = [b[0].numpy() for b in ds]  # a second pass over the same dataset draws new segments
    assert len(second) == 2 and not np.array_equal(first[0][0], second[0])
    other = [[t.numpy() for t in b] for b in make_dataset(out, "train", "vocals", 3, **{**kwargs, "seed": 6})]
    assert not np.array_equal(first[0][0], other[0][0])
    stereo = next(iter(make_dataset(out, "train", "bass", 2, segment_seconds=1.0, channels=2, seed=1)))
    assert stereo[0].shape == (2, 2, SR)


def test_augmented_mixture_is_the_sum_of_augmented_stems(prepared, tmp_path):
    """With a single-instrument dataset the re-summed mixture must equal the (augmented) target."""
    from tfmusic.data.stems.dataset import make_dataset

    root = tmp_path / "bass_only"
    for k in range(3):
        write_song(root, f"B{k}", {"b": ("electric bass", signal("bass") * (0.5 + 0.2 * k), SR)}, mix=None)
    out = tmp_path / "tfr"
    preprocess(root, out, config=PreprocessConfig(segment_seconds=2.0, pcm_dtype="float32"), fractions=(1, 0, 0),
               progress=False)
    mix, tgt, act = next(iter(make_dataset(out, "train", "bass", 4, segment_seconds=1.0, channels=2, seed=0,
                                           deterministic=True, samples_per_epoch=8,
                                           augmentation=Augmentation(eq=0.0, limiter=0.0))))
    np.testing.assert_allclose(mix.numpy(), tgt.numpy(), atol=1e-6)
    peaks = np.abs(tgt.numpy()).max(axis=(1, 2))
    assert peaks.min() > 0.3 * 0.5 * 0.25 * 0.99 and peaks.max() < 0.3 * 0.9 * 1.25 + 1e-3
    assert act.numpy().mean() > 0.9  # a steady tone is active (labels from the un-augmented stem)


def test_unaugmented_and_eval_datasets_use_the_stored_mixture(prepared):
    from tfmusic.data.stems.dataset import make_dataset, make_eval_dataset

    _, out, manifest = prepared
    mix, tgt, act = next(iter(make_dataset(out, "train", "drums", 2, segment_seconds=1.0, augment=False, seed=0)))
    assert np.abs(mix.numpy() - tgt.numpy()).max() > 0.01  # the mixture also holds bass and vocals
    split = manifest["songs"]["Good0"]["split"]
    batches = list(make_eval_dataset(out, split, "vocals", 4, segment_seconds=1.0))
    n = sum(b[0].shape[0] for b in batches)
    assert n == 2 * manifest["splits"][split]["segments"]  # two 1 s crops per 2 s segment
    assert all(b[2].shape[1] == 40 for b in batches)
    with pytest.raises(ValueError, match="exceeds the stored segments"):
        make_dataset(out, "train", "vocals", 2, segment_seconds=3.0)
    with pytest.raises(ValueError, match="target"):
        make_dataset(out, "train", "kazoo", 2)


def test_resampled_song_and_loud_song_scaling(prepared, tmp_path):
    import tensorflow as tf

    from tfmusic.data import schema
    from tfmusic.data.stems.layouts import read_tracks
    from tfmusic.data.stems.preprocess import process_track
    from tfmusic.data.stems.taxonomy import INSTRUMENTS

    _, _, manifest = prepared
    low = manifest["songs"]["LowRate"]
    assert low["status"] == "written" and low["seconds"] == pytest.approx(SECONDS, abs=1e-3)
    loud = 4.0 * signal("bass")  # peak 1.2  # beyond full scale: int16 records are attenuated, and decoded back
    d = tmp_path / "loud" / "song"
    d.mkdir(parents=True)
    sf.write(str(d / "bass.wav"), loud.T, SR, subtype="FLOAT")
    (track,) = read_tracks(tmp_path / "loud", "folder")
    summary = process_track(track.to_dict(), "train", PreprocessConfig(segment_seconds=2.0), str(tmp_path / "p.tfr"))
    assert summary["status"] == "written" and summary["scale"] < 1.0
    raw = next(iter(tf.data.TFRecordDataset(str(tmp_path / "p.tfr"))))
    ex = tf.io.parse_single_example(raw, schema.stems_parse_spec(INSTRUMENTS))
    pcm = np.frombuffer(ex["stem/bass"].numpy(), "<i2").reshape(2, -1) / 32768.0 / float(ex["scale"])
    np.testing.assert_allclose(pcm, loud[:, :88200], atol=1e-3)


def test_tracks_for_split_loads_held_out_songs(prepared):
    _, out, manifest = prepared
    for split in ("valid", "test"):
        tracks = splits.tracks_for_split(out, split)
        # rejected songs keep their split assignment but are in no split's data (nor evaluated)
        assert {t.song_id for t in tracks} == {s for s, v in manifest["song_splits"].items()
                                               if v == split and manifest["songs"][s]["status"] != "rejected"}
    t = splits.tracks_for_split(out, manifest["songs"]["Good1"]["split"])
    (good1,) = [x for x in t if x.song_id == "Good1"]
    mix, stems = good1.load(SR)
    assert mix.shape == (2, int(SECONDS * SR)) and set(stems) == {"bass", "drums", "vocals"}


def test_cli_inspect_and_errors(prepared, capsys, tmp_path):
    from tfmusic.cli.main import main

    _, out, _ = prepared
    assert main(["data", "inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "songs  in 14 = written 8 + rejected 6" in text and "train" in text
    assert main(["data", "inspect", str(tmp_path)]) == 2
    assert "manifest" in capsys.readouterr().err
    assert main(["data", "preprocess", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_wire_encoder_matches_the_tf_example_proto():
    """Records are encoded without TensorFlow; they must equal the proto serialized deterministically."""
    from tfmusic.data import schema
    from tfmusic.data.stems.taxonomy import INSTRUMENTS

    rng = np.random.default_rng(3)
    for trial in range(6):
        scalars = {"song_id": f"Song {trial} \u00e9", "segment_index": trial, "offset": [0, 1024, -7][trial % 3],
                   "num_samples": 441000, "valid_samples": int(rng.integers(0, 441000)), "sample_rate": SR,
                   "channels": 2, "frames": 427, "pcm_dtype": "int16", "scale": float(rng.random())}
        mixture = rng.bytes(int(rng.integers(0, 70000)))  # lengths cross the 1-, 2- and 3-byte varint sizes
        stems = {i: rng.bytes(int(rng.integers(0, 300))) for i in INSTRUMENTS if rng.random() < 0.5}
        act = {i: rng.bytes(int(rng.integers(0, 200))) for i in INSTRUMENTS if rng.random() < 0.5}
        ours = schema.stems_example_bytes(scalars, mixture, stems, act, INSTRUMENTS)
        proto = schema.stems_example(scalars, mixture, stems, act, INSTRUMENTS)
        assert ours == proto.SerializeToString(deterministic=True)


def test_beam_worker_path_does_not_import_tensorflow(prepared, tmp_path):
    """process_track (what each Beam worker runs) must not pay the TensorFlow import."""
    import subprocess
    import sys

    root, _, _ = prepared
    code = (
        "import sys\n"
        "from tfmusic.data.stems.layouts import read_tracks\n"
        "from tfmusic.data.stems.preprocess import PreprocessConfig, process_track\n"
        f"t = [x for x in read_tracks({str(root)!r}, 'auto') if x.song_id == 'Good0'][0]\n"
        f"s = process_track(t.to_dict(), 'train', PreprocessConfig(segment_seconds=2.0), {str(tmp_path / 'p.tfr')!r})\n"
        "assert s['status'] == 'written', s\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
