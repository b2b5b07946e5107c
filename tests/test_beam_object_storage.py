"""Beam jobs where Dataflow users run them: gs:// in and out, fail-fast schemes, kills, Dataflow graphs.

Object storage is a Cloud Storage emulator on 127.0.0.1 (tests/_gcs.py); nothing leaves the machine.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._gcs import download_tree, local_tree
from tfmusic import storage
from tfmusic.cli.main import main as tfmusic_main

ROOT = Path(__file__).resolve().parents[1]
TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
DM_ARGS = ["--limit", "3000", "--num-shards", "3,2,1", "--quiet"]


def test_dmelodies_on_gcs_equals_local(tmp_path, gcs_bucket):
    local = tmp_path / "dm"
    assert tfmusic_main(["dmelodies", "generate", "--out", str(local), *DM_ARGS]) == 0
    remote = f"{gcs_bucket}/dmelodies"
    storage.write_bytes(f"{remote}/.staging/killed-run/train.tfrecord-00000-of-00003", b"left by a killed run")
    assert tfmusic_main(["dmelodies", "generate", "--out", remote, *DM_ARGS, *TWO_WORKERS]) == 0
    expected = local_tree(local)
    assert "metadata.json" in expected and len([k for k in expected if ".tfrecord-" in k]) == 6
    in_bucket = download_tree(remote)
    assert not any(k.startswith(".staging") for k in in_bucket)  # no staging left in the bucket, old or new
    assert in_bucket == expected  # every shard and metadata file, byte for byte

    from tfmusic.data import dmelodies as dm

    meta = dm.read_metadata(remote)
    assert meta["num_items"] == 3000
    tokens, _ = dm.read_items(remote, [0, 2999])
    assert (tokens == dm.generate_items([0, 2999])[0]).all()


def _cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "tfmusic", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


def test_unknown_scheme_fails_fast_and_writes_nothing(tmp_path):
    proc = _cli("dmelodies", "generate", "--out", "foo://bucket/x", "--limit", "10", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown scheme 'foo://'" in proc.stderr and "foo://bucket/x" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no local 'foo:' folder


def test_gs_without_gcp_extra_names_the_extra(tmp_path):
    # Simulate a plain install without apache-beam[gcp]: the Cloud Storage client cannot be imported.
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['google.cloud.storage'] = None\n")
    proc = _cli("dmelodies", "generate", "--out", "gs://bucket/x", "--limit", "10", "--quiet",
                env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "tfmusic[dataflow]" in proc.stderr and "gs://bucket/x" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["sitecustomize.py"]


def _kill_when(out: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    """SIGKILL the driver once workers have staged some (not all) shards."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        staged = list((out / ".staging").glob("*/*.tfrecord-*")) if (out / ".staging").exists() else []
        if staged:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.05)
    raise AssertionError("the job finished (or never staged a shard) before it could be killed")


@pytest.mark.slow
def test_killed_job_leaves_no_dataset_and_rerun_is_identical(tmp_path):
    args = ["dmelodies", "generate", "--limit", "200000", "--num-shards", "40,10,5", "--quiet"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tfmusic", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _kill_when(killed, proc)
    names = [p.name for p in killed.iterdir()]
    assert "metadata.json" not in names and "dataset_info.json" not in names
    assert not [n for n in names if ".tfrecord-" in n]  # nothing finalized: shards are renamed in one step
    from tfmusic.data import dmelodies as dm

    with pytest.raises(FileNotFoundError, match="no metadata.json"):
        dm.load(killed, "train", 8)
    assert tfmusic_main([*args, "--out", str(killed)]) == 0
    clean = tmp_path / "clean"
    assert tfmusic_main([*args, "--out", str(clean)]) == 0
    assert local_tree(killed) == local_tree(clean)


def test_dataflow_template_builds_offline(tmp_path, gcs_bucket, sdist_once):
    """The DataflowRunner graph (with the sdist of setup.py staged) is written as a classic template."""
    template = f"{gcs_bucket}/templates/dmelodies.json"
    rc = tfmusic_main(["dmelodies", "generate", "--out", f"{gcs_bucket}/dm-dataflow", "--limit", "100", "--quiet",
                       "--runner=DataflowRunner", "--project=tfmusic-test", "--region=us-central1",
                       f"--temp_location={gcs_bucket}/tmp", f"--template_location={template}",
                       f"--setup_file={ROOT / 'setup.py'}"])
    assert rc == 0
    import json

    job = json.loads(storage.read_text(template))
    packages = {p["name"]: p["location"] for pool in job["environment"]["workerPools"]
                for p in pool.get("packages", [])}
    assert "workflow.tar.gz" in packages  # the project sdist that workers install (--setup_file)
    # Runner v2 stages the graph as a pipeline proto next to the packages.
    from apache_beam.portability.api import beam_runner_api_pb2

    staged = "gs://" + packages["workflow.tar.gz"].split("storage.googleapis.com/", 1)[1]
    graph = beam_runner_api_pb2.Pipeline.FromString(storage.read_bytes(staged.rsplit("/", 1)[0] + "/pipeline.pb"))
    names = {t.unique_name for t in graph.components.transforms.values()}
    for step in ("GenerateDMelodies/Plan", "GenerateDMelodies/GenerateShard", "GenerateDMelodies/StageShard",
                 "GenerateDMelodies/Finalize/RenameIntoPlace", "GenerateDMelodies/WriteMetadata"):
        assert step in names
