"""The measures Beam job (local and gs://), held-out splits, the tf.data reader and the CLI."""
import json

import numpy as np
import pytest

from tfmusic.data import measures as M
from tfmusic.music.attributes import HOLD, REST, grid_attributes
from tests._gcs import download_tree, local_tree

# 5 files each of two collections. Seed 21 puts tunes in all three splits and leaves bars in both
# validation and test that repeat training bars (up to transposition), so the hold-out acts.
KWARGS = dict(collections=["ryansMammoth", "bach"], max_files=5, seed=21, progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("measures")
    m1 = M.build(root / "a", cache_dir=root / "cache", **KWARGS)   # parses, fills the cache
    m2 = M.build(root / "b", cache_dir=root / "cache", **KWARGS)   # served from the cache
    return root, (m1, m2)


def test_build_manifest_counts(built):
    root, (m, _) = built
    assert m["version"] == M.VERSION and m["files_in"] == 10 and m["files_failed"] == 0
    assert m["bars_out"] > 80
    assert m["bars_in"] == m["bars_out"] + sum(m["bars_rejected"].values())
    assert m["bars_extracted"] == m["bars_out"] + m["bars_rejected"][M.DUPLICATE_REASON]
    assert sum(m["splits"].values()) == m["bars_out"] == sum(m["bars_out_by_collection"].values())
    assert sum(m["split_tunes"].values()) == m["tunes_with_bars"] and min(m["split_tunes"].values()) >= 1
    assert set(m["bars_out_by_collection"]) == {"ryansMammoth", "bach"}
    assert "time_signature" in m["bars_rejected"]
    assert json.loads((root / "a" / "manifest.json").read_text()) == m
    assert sorted(p.name for p in (root / "a").iterdir()) == sorted([*m["shards"].values(), "manifest.json",
                                                                     "vocabulary.json"])
    assert len(list((root / "cache").glob("*.json"))) == 10


def test_build_is_deterministic_with_and_without_cache(built):
    root, _ = built
    assert local_tree(root / "a") == local_tree(root / "b")


def test_evaluation_splits_are_held_out(built):
    """No evaluated tune, and no evaluated bar (token grid, nor a transposition of one), is in train."""
    root, (m, _) = built
    data = root / "a"
    train = M.read_numpy(data, "train")
    train_tunes = set(train["tune_id"])
    train_grids = {tuple(g) for g in train["tokens"].tolist()}
    train_classes = {M.transposition_class(g) for g in train["pitches"]}
    for split in M.EVALUATION_SPLITS:
        arrays = M.read_numpy(data, split)
        assert len(arrays["tokens"]) == m["splits"][split] > 0
        assert not set(arrays["tune_id"]) & train_tunes
        assert not {tuple(g) for g in arrays["tokens"].tolist()} & train_grids
        assert not {M.transposition_class(g) for g in arrays["pitches"]} & train_classes
        assert len(set(arrays["tune_id"])) == m["split_tunes"][split]
    assert m["bars_rejected"][M.DUPLICATE_REASON] > 0
    # the dropped bars did come from both evaluation splits: without the filter they would leak
    extracted = [M.extract_file(c, r, root / "cache") for c, r in M.list_sources(KWARGS["collections"], 5)]
    leaking = {M.assign_split(t, KWARGS["seed"]) for res in extracted for t, _, g in res["bars"]
               if M.assign_split(t, KWARGS["seed"]) != "train" and M.transposition_class(g) in train_classes}
    assert leaking == {"validation", "test"}


def test_build_to_cloud_storage_with_two_workers_is_byte_identical(built, gcs_bucket):
    """gs:// output and gs:// cache, 2 multi_processing workers: the same bytes as the local build."""
    from tfmusic import storage

    root, (m, _) = built
    out, cache = f"{gcs_bucket}/measures/out", f"{gcs_bucket}/measures/cache"
    workers = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    assert M.build(out, cache_dir=cache, beam_args=workers, **KWARGS) == m
    assert download_tree(out) == local_tree(root / "a")
    cached = storage.glob(f"{cache}/*.json")
    assert len(cached) == 10
    assert {storage.basename(p) for p in cached} == {p.name for p in (root / "cache").glob("*.json")}
    # a re-run over an existing output, served from the gs:// cache, replaces it with the same bytes
    assert M.build(out, cache_dir=cache, **KWARGS) == m
    assert download_tree(out) == local_tree(root / "a")


def test_killed_build_leaves_no_dataset_and_a_rerun_matches(built, tmp_path):
    """SIGKILL to the driver half way: no manifest, vocabulary or shard; the re-run writes the same bytes."""
    import subprocess
    import sys
    import time

    root, (m, _) = built
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["--out", str(out), "--cache-dir", str(cache), "--collections", *KWARGS["collections"],
            "--max-files", str(KWARGS["max_files"]), "--seed", str(KWARGS["seed"]), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "tfmusic", "measures", "build", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(cache.glob("*.json")):  # the first of 10 files is extracted: the job is under way
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert len(list(cache.glob("*.json"))) < 10
    assert not [p for p in out.iterdir() if not p.name.startswith(".")]
    assert M.build(out, cache_dir=cache, **KWARGS) == m
    assert local_tree(out) == local_tree(root / "a")


def test_dataflow_job_graph_builds_offline(gcs_bucket):
    """DataflowRunner with --template_location stages the job graph and submits nothing."""
    import re

    from apache_beam.portability.api import beam_runner_api_pb2

    from tfmusic import storage

    out, template = f"{gcs_bucket}/graph/out", f"{gcs_bucket}/graph/measures-template.json"
    storage.write_bytes(f"{out}/manifest.json", b"{}")  # an existing output is left alone
    dataflow = ["--runner=DataflowRunner", "--project=tfmusic-test", "--region=us-central1",
                f"--temp_location={gcs_bucket}/graph/tmp", f"--template_location={template}",
                "--sdk_location=container"]
    assert M.build(out, beam_args=dataflow, **KWARGS) is None
    url = re.search(r'"pipelineUrl": "([^"]+)"', storage.read_text(template)).group(1)
    graph = beam_runner_api_pb2.Pipeline.FromString(storage.read_bytes(url))
    names = {t.unique_name for t in graph.components.transforms.values()}
    assert {"BuildMeasures/Extract", "BuildMeasures/HoldOut", "BuildMeasures/SumStats",
            "BuildMeasures/Finalize/RenameIntoPlace", "BuildMeasures/WriteManifest"} <= names
    assert storage.glob(f"{out}/*") == [f"{out}/manifest.json"]


def test_unusable_paths_fail_before_any_work(tmp_path):
    from tfmusic.storage import StorageError

    with pytest.raises(StorageError, match="unknown scheme 'nope://'"):
        M.build("nope://bucket/measures", **KWARGS)
    with pytest.raises(StorageError, match="unknown scheme"):
        M.build(tmp_path / "out", cache_dir="nope://cache", **KWARGS)
    with pytest.raises(ValueError, match="unknown collection"):
        M.build(tmp_path / "out", collections=["nope"])
    assert not (tmp_path / "out").exists()


def test_reader_shapes_attributes_and_transposition(built):
    root, (m, _) = built
    data = root / "a"
    arrays = M.read_numpy(data, "train")
    n = m["splits"]["train"]
    assert arrays["tokens"].shape == (n, 24)
    np.testing.assert_array_equal(arrays["tokens"], M.grid_to_ids(arrays["pitches"]))
    np.testing.assert_allclose(arrays["attributes"], grid_attributes(arrays["pitches"]), atol=1e-6)

    plain = list(M.load(data, "train", 8, shuffle=False, transpose=False).as_numpy_iterator())
    tokens, attrs = plain[0]
    assert tokens.dtype == np.int32 and tokens.shape == (8, 24)
    assert attrs.dtype == np.float32 and attrs.shape == (8, 4)
    np.testing.assert_array_equal(np.concatenate([t for t, _ in plain]), arrays["tokens"])

    moved = list(M.load(data, "train", 1000, shuffle=False, transpose=True, seed=3).as_numpy_iterator())[0]
    again = list(M.load(data, "train", 1000, shuffle=False, transpose=True, seed=3).as_numpy_iterator())[0]
    np.testing.assert_array_equal(moved[0], again[0])
    assert moved[0].min() >= M.REST_ID and moved[0].max() < M.VOCAB_SIZE
    assert not np.array_equal(moved[0], arrays["tokens"])
    grid = M.ids_to_grid(moved[0])
    np.testing.assert_allclose(grid_attributes(grid), arrays["attributes"], atol=1e-6)
    # the rhythm (which ticks hold, rest or start a note) never changes under transposition
    np.testing.assert_array_equal(moved[0] < M.NOTE_OFFSET, arrays["tokens"] < M.NOTE_OFFSET)

    shuffled = list(M.load(data, "train", 1000, seed=0).as_numpy_iterator())[0][0]
    assert sorted(map(tuple, M.ids_to_grid(shuffled) >= 0)) == sorted(map(tuple, arrays["pitches"] >= 0))


def test_reader_errors(tmp_path, built):
    with pytest.raises(FileNotFoundError):
        M.load(tmp_path, "train", 4)
    with pytest.raises(ValueError, match="unknown split"):
        M.load(built[0] / "a", "eval", 4)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vocabulary.json").write_text(json.dumps({"tokens": ["x"]}))
    with pytest.raises(ValueError, match="vocabulary differs"):
        M.load(bad, "train", 4)
    old = tmp_path / "old"
    old.mkdir()
    (old / "vocabulary.json").write_text((built[0] / "a" / "vocabulary.json").read_text())
    (old / "manifest.json").write_text(json.dumps({"dataset": "measures", "extract_version": 2}))
    with pytest.raises(ValueError, match="version 2.*rebuild"):
        M.load(old, "train", 4)


def test_cli_info_and_errors(built, capsys):
    from tfmusic.cli.main import main

    assert main(["measures", "info", str(built[0] / "a"), "--split", "test", "--examples", "1"]) == 0
    out = capsys.readouterr().out
    assert "rhythmic_complexity" in out and "bars_out" in out and "duplicate_of_train" in out
    assert main(["measures", "info", str(built[0] / "nope")]) == 2
    assert main(["measures", "build", "--out", str(built[0] / "x"), "--max-files", "0"]) == 2
    assert main(["measures", "build", "--out", "nope://x", "--max-files", "1"]) == 2
    assert "unknown scheme" in capsys.readouterr().err


def test_record_bytes_do_not_depend_on_the_process():
    """Beam workers are separate processes with their own hash seeds; records must not change."""
    import os
    import subprocess
    import sys

    grid = [67, HOLD, 69, REST] + [HOLD] * 20
    code = ("from tfmusic.data import measures as M; import sys; "
            f"sys.stdout.write(M.bar_example('bach', 't#0', 3, {grid}).hex())")
    env = {**os.environ, "PYTHONHASHSEED": "7"}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert other.stdout == M.bar_example("bach", "t#0", 3, grid).hex()
