"""Readers of MUSDB18-HQ, MedleyDB, Mixing Secrets (YAML and plain folders) and track folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tfmusic.audio.io import AudioFileError, read_audio, write_audio
from tfmusic.data.stems.layouts import LayoutError, detect_layout, read_tracks
from tfmusic.data.stems.track import Track

SR = 22050


def tone(freq: float, seconds: float = 1.0, channels: int = 2, amp: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return np.stack([amp * np.sin(2 * np.pi * freq * t)] * channels).astype(np.float32)


def make_musdb(root: Path) -> None:
    for subset, names in (("train", ["Artist - Song A", "Artist - Song B"]), ("test", ["Other - Song C"])):
        for k, name in enumerate(names):
            d = root / subset / name
            stems = {s: tone(100 * (i + 1) + k) for i, s in enumerate(("vocals", "drums", "bass", "other"))}
            for s, a in stems.items():
                write_audio(d / f"{s}.wav", a, SR)
            write_audio(d / "mixture.wav", sum(stems.values()), SR)


def make_medleydb(root: Path, origin: str = "MedleyDB", labels=("female singer", "drum set", "electric bass"),
                  metadata_dir: bool = False) -> None:
    for name in ("ArtistA_Song", "ArtistB_Song"):
        d = root / name
        stems = {}
        for i, label in enumerate(labels, 1):
            fname = f"{name}_STEM_{i:02d}.wav"
            write_audio(d / f"{name}_STEMS" / fname, tone(150 * i), SR)
            write_audio(d / f"{name}_RAW" / f"{name}_RAW_{i:02d}_01.wav", tone(150 * i, channels=1), SR)
            stems[f"S{i:02d}"] = {"component": "", "filename": fname, "instrument": label,
                                  "raw": {"R01": {"filename": f"{name}_RAW_{i:02d}_01.wav", "instrument": label}}}
        write_audio(d / f"{name}_MIX.wav", sum(tone(150 * i) for i in range(1, len(labels) + 1)), SR)
        meta = {"artist": name.split("_")[0], "title": "Song", "origin": origin, "mix_filename": f"{name}_MIX.wav",
                "stem_dir": f"{name}_STEMS", "raw_dir": f"{name}_RAW", "has_bleed": "no", "stems": stems}
        meta_path = (root / "Metadata" if metadata_dir else d) / f"{name}_METADATA.yaml"
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(yaml.safe_dump(meta))


def test_musdb(tmp_path):
    make_musdb(tmp_path)
    assert detect_layout(tmp_path) == "musdb"
    tracks = read_tracks(tmp_path)
    assert [t.song_id for t in tracks] == ["test/Other - Song C", "train/Artist - Song A", "train/Artist - Song B"]
    t = tracks[1]
    assert t.layout == "musdb" and t.metadata["subset"] == "train"
    assert t.instruments == ["vocals", "drums", "bass", "other"]
    assert t.mixture.endswith("mixture.wav")
    mix, stems = t.load(SR)
    assert mix.shape == (2, SR) and mix.dtype == np.float32
    np.testing.assert_allclose(mix, sum(stems.values()), atol=2e-4)


def test_medleydb_labels_and_mixture(tmp_path):
    make_medleydb(tmp_path, labels=("female singer", "drum set", "electric bass", "clean electric guitar",
                                    "acoustic guitar", "electric piano", "synthesizer"))
    assert detect_layout(tmp_path) == "medleydb"
    tracks = read_tracks(tmp_path)
    assert len(tracks) == 2
    t = tracks[0]
    assert t.layout == "medleydb" and t.name == "ArtistA_Song"
    assert t.instruments == ["vocals", "drums", "bass", "electric_guitar", "acoustic_guitar", "piano", "other"]
    assert t.metadata["labels"]["ArtistA_Song_STEM_07.wav"] == "synthesizer"
    assert t.mixture.endswith("ArtistA_Song_MIX.wav") and not t.rejected_stems and not t.unknown_labels
    assert t.metadata["raw_files"] == 7
    mix, stems = t.load(44100)  # resampled on load
    assert mix.shape[1] == 44100 and stems["vocals"].shape == mix.shape


def test_medleydb_metadata_folder_and_unknown_policy(tmp_path):
    make_medleydb(tmp_path, labels=("male singer", "laser harp"), metadata_dir=True)
    (t, _) = read_tracks(tmp_path, "medleydb")
    assert t.stems.keys() == {"vocals", "other"} and t.unknown_labels == ["laser harp"]
    (t, _) = read_tracks(tmp_path, "medleydb", unknown_policy="reject")
    assert t.stems.keys() == {"vocals"}
    assert "unknown instrument label 'laser harp'" in t.rejected_stems[0]["reason"]
    assert t.rejected_stems[0]["file"].endswith("ArtistA_Song_STEM_02.wav")


def test_mixing_secrets_yaml_and_plain(tmp_path):
    make_medleydb(tmp_path / "yaml", origin="Mixing Secrets")
    assert detect_layout(tmp_path / "yaml") == "mixing_secrets"
    assert {t.layout for t in read_tracks(tmp_path / "yaml")} == {"mixing_secrets"}
    plain = tmp_path / "plain" / "Band_Title"
    for i, name in enumerate(("01_KickIn", "02_Snare", "05_BassDI", "07_ElecGtr1", "08_AcGtr", "10_LeadVox",
                              "11_Piano", "12_Mystery")):
        write_audio(plain / f"{name}.wav", tone(100 + 30 * i), SR)
    assert detect_layout(tmp_path / "plain") == "mixing_secrets"
    (t,) = read_tracks(tmp_path / "plain")
    assert t.mixture is None and t.unknown_labels == ["12_Mystery.wav"]
    assert {k: len(v) for k, v in t.stems.items()} == {"drums": 2, "bass": 1, "electric_guitar": 1,
                                                     "acoustic_guitar": 1, "vocals": 1, "piano": 1, "other": 1}
    mix, stems = t.load(SR)
    np.testing.assert_allclose(mix, sum(stems.values()), atol=1e-6)  # no mix file: sum of stems
    (t,) = read_tracks(tmp_path / "plain", "mixing_secrets", unknown_policy="reject")
    assert "other" not in t.stems and t.rejected_stems[0]["file"].endswith("12_Mystery.wav")


def test_track_folder(tmp_path):
    d = tmp_path / "song1"
    write_audio(d / "vocals.wav", tone(300), SR)
    write_audio(d / "bass.wav", tone(60, channels=1), SR)  # mono stem is repeated to stereo
    write_audio(d / "electric_guitar_2.wav", tone(500, seconds=0.5), SR)  # shorter: zero-padded
    write_audio(d / "mixture.wav", tone(300) + tone(60), SR)
    assert detect_layout(tmp_path) == "folder"
    (t,) = read_tracks(tmp_path)
    assert t.layout == "folder" and t.instruments == ["vocals", "bass", "electric_guitar"]
    mix, stems = t.load(SR)
    assert mix.shape == stems["bass"].shape == stems["electric_guitar"].shape == (2, SR)
    assert np.all(stems["electric_guitar"][:, SR // 2 + 10:] == 0)
    assert Track(**t.to_dict()) == t


def test_errors_name_the_file(tmp_path):
    with pytest.raises(LayoutError, match="no track folders"):
        detect_layout(tmp_path)
    with pytest.raises(LayoutError, match="not a directory"):
        read_tracks(tmp_path / "nope")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF this is not audio")
    with pytest.raises(AudioFileError, match="bad.wav: unreadable audio"):
        read_audio(bad)
    with pytest.raises(AudioFileError, match="does not exist"):
        read_audio(tmp_path / "missing.wav")
