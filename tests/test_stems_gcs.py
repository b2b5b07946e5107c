"""The multitrack Beam jobs where Dataflow users run them: gs:// in and out, same bytes as a local run.

``tfmusic data synthesize`` and ``tfmusic data preprocess`` run once locally (one worker) and once
gs:// -> gs:// with two multi_processing workers; every output file must be byte-identical (the
preprocessing manifest differs only in ``input``, the root it read). Object storage is a Cloud
Storage emulator on 127.0.0.1 (tests/_gcs.py); nothing leaves the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._gcs import download_tree, local_tree
from tfmusic.cli.main import main as tfmusic_main

ROOT = Path(__file__).resolve().parents[1]
TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
SYNTH_ARGS = ["--songs", "2", "--seed", "3", "--seconds", "5", "--sample-rate", "22050", "--quiet",
              "--soundfont", "bundled"]
PREP_ARGS = ["--segment-seconds", "2", "--splits", "1,0,0", "--quiet"]
BAD_STEM = "Synth_s3_0000/Synth_s3_0000_STEMS/Synth_s3_0000_STEM_02.wav"  # song 0 has several stems


@pytest.fixture(scope="module")
def runs(tmp_path_factory, gcs_bucket):
    """Synthesize + preprocess locally and on gs:// (2 workers); one stem made unreadable in both inputs."""
    from tfmusic import storage

    work = tmp_path_factory.mktemp("stems_gcs")
    local_synth, remote_synth = work / "synth", f"{gcs_bucket}/stems/synth"
    assert tfmusic_main(["data", "synthesize", "--out", str(local_synth), *SYNTH_ARGS]) == 0
    assert tfmusic_main(["data", "synthesize", "--out", remote_synth, *SYNTH_ARGS, *TWO_WORKERS]) == 0
    synth_trees = local_tree(local_synth), download_tree(remote_synth)

    garbage = b"RIFF\x10\x00\x00\x00WAVEnot audio at all"
    (local_synth / BAD_STEM).write_bytes(garbage)
    storage.write_bytes(f"{remote_synth}/{BAD_STEM}", garbage)
    local_out, remote_out = work / "stems", f"{gcs_bucket}/stems/tfrecords"
    assert tfmusic_main(["data", "preprocess", "--input", str(local_synth), "--out", str(local_out), *PREP_ARGS]) == 0
    assert tfmusic_main(["data", "preprocess", "--input", remote_synth, "--out", remote_out, *PREP_ARGS,
                         *TWO_WORKERS]) == 0
    return {"synth": synth_trees, "local_out": local_out, "remote_out": remote_out,
            "prep": (local_tree(local_out), download_tree(remote_out)), "remote_synth": remote_synth}


def test_synthesize_on_gcs_equals_local(runs):
    local, remote = runs["synth"]
    assert remote == local  # every wav / mid / yaml and the manifest, byte for byte
    assert "synth_manifest.json" in local and not any(k.startswith(".staging") for k in remote)
    manifest = json.loads(local["synth_manifest.json"])
    assert manifest["counts"] == {"in": 2, "written": 2, "rejected": 0}
    assert "wall_seconds" not in manifest and [f["name"] for f in manifest["soundfonts"]] == ["TimGM6mb.sf2"]
    files = {e["file"] for e in manifest["files"]}
    assert files == set(local) - {"synth_manifest.json"}


def test_preprocess_on_gcs_equals_local(runs):
    local, remote = runs["prep"]
    assert set(remote) == set(local) and not any(k.startswith(".staging") for k in remote)
    shards = [k for k in local if ".tfrecord-" in k]
    assert shards and all(remote[k] == local[k] for k in shards)
    assert remote["rejects.jsonl"] == local["rejects.jsonl"]
    lm, rm = json.loads(local["manifest.json"]), json.loads(remote["manifest.json"])
    assert lm["input"] == str(runs["local_out"].parent / "synth") and rm["input"] == runs["remote_synth"]
    assert {**lm, "input": None} == {**rm, "input": None}
    # Nothing else in the manifest says where the data was: track paths are relative to the input root.
    text = local["manifest.json"].decode()
    assert str(runs["local_out"].parent) not in text.replace(lm["input"], "")
    track = lm["songs"]["Synth_s3_0000"]["track"]
    assert track["path"] == "Synth_s3_0000" and track["mixture"] == "Synth_s3_0000/Synth_s3_0000_MIX.wav"
    assert lm["counts"]["songs"] == {"in": 2, "written": 1, "rejected": 1}  # the song with the corrupt stem


def test_unreadable_file_on_gcs_is_a_clear_per_file_reject(runs):
    _, remote = runs["prep"]
    rejects = [json.loads(line) for line in remote["rejects.jsonl"].decode().splitlines()]
    # An unusable stem rejects its whole song (the mixture still holds that instrument); the line names the stem.
    assert rejects == [{"file": BAD_STEM, "kind": "song", "song_id": "Synth_s3_0000",
                        "reason": "unusable stem: unreadable audio (Error in WAV file. No 'data' chunk marker.)"}]
    manifest = json.loads(remote["manifest.json"])
    assert manifest["counts"]["songs"]["rejected"] == 1
    assert manifest["counts"]["reject_reasons"] == {"unusable stem: unreadable audio": 1}


def test_held_out_tracks_load_from_gcs(runs):
    from tfmusic.audio.io import AudioFileError, audio_info, read_audio
    from tfmusic.data.stems.splits import tracks_for_split

    tracks = tracks_for_split(runs["remote_out"], "train")
    assert [t.song_id for t in tracks] == ["Synth_s3_0001"]  # song 0 holds the unreadable stem: rejected
    assert tracks[0].mixture == f"{runs['remote_synth']}/Synth_s3_0001/Synth_s3_0001_MIX.wav"
    mix, stems = tracks[0].load(22050)
    assert mix.shape == (2, 5 * 22050) and list(stems) == tracks[0].instruments and len(stems) >= 1
    info = audio_info(tracks[0].mixture)
    assert (info.sample_rate, info.channels, info.frames) == (22050, 2, 5 * 22050)
    with pytest.raises(AudioFileError, match="Synth_s3_0000_STEM_02.wav: unreadable audio"):
        read_audio(f"{runs['remote_synth']}/{BAD_STEM}")
    with pytest.raises(AudioFileError, match="nope.wav: file does not exist"):
        audio_info(f"{runs['remote_synth']}/nope.wav")


def test_missing_gcs_input_is_a_clear_error(gcs_bucket, capsys):
    rc = tfmusic_main(["data", "preprocess", "--input", f"{gcs_bucket}/no/such/dataset",
                       "--out", f"{gcs_bucket}/never", "--quiet"])
    assert rc == 2
    assert "gs://tfmusic-test/no/such/dataset: not a directory" in capsys.readouterr().err


def test_local_paths_with_a_remote_runner_fail_fast(tmp_path, capsys):
    """Dataflow workers cannot see this machine's disk: local --input/--out/--soundfont are refused up front."""
    dataflow = ["--runner=DataflowRunner", "--quiet"]
    assert tfmusic_main(["data", "synthesize", "--out", str(tmp_path / "s"), "--songs", "1", *dataflow]) == 2
    assert f"--out {tmp_path / 's'}: a local path is not on the DataflowRunner workers" in capsys.readouterr().err
    assert tfmusic_main(["data", "preprocess", "--input", str(tmp_path), "--out", "gs://b/o", *dataflow]) == 2
    assert "--input" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_dataflow_templates_build_offline(gcs_bucket, runs, sdist_once):
    """Both jobs build their DataflowRunner graphs (as classic templates) with the named PTransforms."""
    from apache_beam.portability.api import beam_runner_api_pb2

    from tfmusic import storage

    dataflow = ["--runner=DataflowRunner", "--project=tfmusic-test", "--region=us-central1",
                f"--temp_location={gcs_bucket}/tmp", f"--setup_file={ROOT / 'setup.py'}"]
    jobs = {
        "SynthesizeStems": ["data", "synthesize", "--out", f"{gcs_bucket}/df/synth", *SYNTH_ARGS],
        "PreprocessStems": ["data", "preprocess", "--input", runs["remote_synth"], "--out", f"{gcs_bucket}/df/stems",
                            *PREP_ARGS],
    }
    steps = {"SynthesizeStems": ("RenderAndStage", "Finalize/RenameIntoPlace", "WriteManifest"),
             "PreprocessStems": ("ProcessSongs", "GroupBySplit", "StageShards", "Finalize/RenameIntoPlace",
                                 "WriteMetadata")}
    for name, args in jobs.items():
        template = f"{gcs_bucket}/templates/{name}.json"
        assert tfmusic_main([*args, *dataflow, f"--template_location={template}"]) == 0
        job = json.loads(storage.read_text(template))
        packages = {p["name"]: p["location"] for pool in job["environment"]["workerPools"]
                    for p in pool.get("packages", [])}
        staged = "gs://" + packages["workflow.tar.gz"].split("storage.googleapis.com/", 1)[1]
        graph = beam_runner_api_pb2.Pipeline.FromString(storage.read_bytes(staged.rsplit("/", 1)[0] + "/pipeline.pb"))
        names = {t.unique_name for t in graph.components.transforms.values()}
        for step in steps[name]:
            assert f"{name}/{step}" in names
    assert not storage.exists(f"{gcs_bucket}/df/synth/synth_manifest.json")  # a template runs nothing
    assert len(sdist_once) == 1  # both jobs staged the one sdist built for the session


@pytest.mark.parametrize("layout", ["musdb", "medleydb", "mixing_secrets", "folder"])
def test_layouts_read_the_same_tracks_from_gcs(tmp_path, gcs_bucket, layout):
    """Every layout reader lists a gs:// copy of a dataset exactly as the local one (paths relative to the root)."""
    from tests._gcs import upload_tree
    from tests.test_stems_layouts import make_medleydb, make_musdb, tone
    from tfmusic.audio.io import write_audio
    from tfmusic.data.stems.layouts import detect_layout, read_tracks

    local = tmp_path / layout
    if layout == "musdb":
        make_musdb(local)
    elif layout == "medleydb":
        make_medleydb(local, metadata_dir=True)
    elif layout == "mixing_secrets":
        for i, name in enumerate(("01_KickIn", "05_BassDI", "10_LeadVox", "12_Mystery")):
            write_audio(local / "Band_Title" / f"{name}.wav", tone(100 + 30 * i, 0.2), 22050)
    else:
        for song in ("song1", "song2"):
            for name in ("vocals", "bass_2", "mixture"):
                write_audio(local / song / f"{name}.wav", tone(200, 0.2), 22050)
    (local / ".staging").mkdir()
    (local / ".staging" / "junk.wav").write_bytes(b"ignored: hidden")
    remote = f"{gcs_bucket}/layouts/{layout}"
    upload_tree(local, remote)
    assert detect_layout(remote) == detect_layout(local) == layout
    here = [t.relative_to(local) for t in read_tracks(local)]
    there = [t.relative_to(remote) for t in read_tracks(remote)]
    assert there == here and here
    assert not any("://" in f or f.startswith("/") for t in here for fs in t["stems"].values() for f in fs)
