"""`tfmusic evaluate --beam` against object storage: songs, a model and results all on gs://.

The Cloud Storage emulator on 127.0.0.1 (tests/_gcs.py) stands in for gs://. The same job over a
local folder (Beam's in-process runner) and over gs:// (2 multi_processing workers) must write the
same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests._gcs import download_tree, local_tree, upload_tree
from tfmusic.audio.io import write_audio
from tfmusic.cli.main import main
from tfmusic.data.stems.track import Track

SR = 44100
WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _write_dataset(root: Path, base: str, names: list[str], channels: int | None = None) -> None:
    """Songs under ``root/songs`` and a stems manifest in ``root/data`` naming them under ``base``
    (``base`` is ``root`` itself, or the gs:// folder the tree is uploaded to). Stereo and mono
    songs alternate unless ``channels`` is given."""
    songs = {}
    for seed, name in enumerate(names, 1):
        rng = np.random.default_rng(seed)
        channels = channels or (2 if seed % 2 else 1)
        t = np.arange(int((1.1 + 0.1 * seed) * SR)) / SR
        bass = np.stack([0.4 * np.sin(2 * np.pi * (80 + 10 * seed + c) * t) for c in range(channels)])
        drums = 0.2 * rng.standard_normal((channels, t.size)) * (np.sin(2 * np.pi * 3 * t) > 0.3)
        write_audio(root / "songs" / name / "bass.wav", bass)
        write_audio(root / "songs" / name / "drums.wav", drums)
        folder = f"{base}/songs/{name}"
        track = Track(name=name, layout="folder", path=folder, mixture=None,
                      stems={"bass": [f"{folder}/bass.wav"], "drums": [f"{folder}/drums.wav"]})
        songs[name] = {"split": "test", "track": track.to_dict()}
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "manifest.json").write_text(json.dumps({"songs": songs}, indent=1))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from tfmusic.models.iass import IASS

    path = tmp_path_factory.mktemp("model") / "iass_drums.keras"
    IASS(nb_channels=1, max_bin=729, target="drums").build_for_frames().save(path)
    return path


def _evaluate(data: str, out: str, model: str, *extra: str) -> int:
    return main(["evaluate", "--data", data, "--out", out, "--model", f"IASS={model}",
                 "--oracles", "mix", "--quiet", *extra])


def test_local_and_gcs_runs_write_identical_results(tmp_path, gcs_bucket, model_file, capsys):
    from tfmusic import storage

    names = ["song_a", "song_b"]
    local = tmp_path / "local"
    _write_dataset(local, str(local), names)
    remote_src = tmp_path / "remote"
    base = f"{gcs_bucket}/evaluate"
    _write_dataset(remote_src, base, names)
    upload_tree(remote_src, base)
    storage.write_bytes(f"{base}/models/iass_drums.keras", model_file.read_bytes())

    # the local run in this process (the worker processes' own TensorFlow start is what costs), the gs:// run on
    # 2 worker processes: equal bytes also mean the worker layout does not change the results
    assert _evaluate(str(local / "data"), str(local / "eval"), str(model_file), "--beam") == 0
    assert "| drums | IASS |" in capsys.readouterr().out  # the summary, read back from the output
    out = f"{base}/eval"
    assert _evaluate(f"{base}/data", out, f"{base}/models/iass_drums.keras", "--beam", *WORKERS) == 0

    ours, theirs = download_tree(out), local_tree(local / "eval")
    per_track = sorted(k for k in theirs if k.count("/") == 2)
    assert per_track == [f"{m}/test/{s}.json" for m in ("IASS", "input-SDR") for s in names]
    assert sorted(ours) == sorted(theirs) == sorted(per_track + ["manifest.json", "summary.json", "summary.md"])
    for name in per_track + ["summary.json", "summary.md"]:
        assert ours[name] == theirs[name], name
    manifests = [json.loads(tree["manifest.json"]) for tree in (ours, theirs)]
    assert manifests[0].pop("models") != manifests[1].pop("models")  # the model paths differ, nothing else
    assert manifests[0] == manifests[1]
    assert manifests[0]["counts"] == {"in": 2, "out": 2, "failed": 0} and manifests[0]["files"] == 4
    doc = json.loads(ours["IASS/test/song_a.json"])
    assert set(doc) >= {"targets", "museval_version", "track", "method", "activity"}
    assert not {"time", "wall_seconds", "elapsed", "seconds_taken"} & set(doc)  # no timing in results
    # the report reads and writes object storage too
    assert main(["report", "--results", out, "--out", f"{base}/report"]) == 0
    assert {"report.md", "summary.json", "sdr_boxplot.png", "metrics_bars.png"} <= {
        storage.basename(p) for p in storage.glob(f"{base}/report/*")}
    assert "| drums | IASS |" in storage.read_text(f"{base}/report/report.md")


def test_dataflow_job_graph_builds_offline(tmp_path, gcs_bucket, model_file):
    """DataflowRunner with --template_location stages the EvaluateSeparation graph, runs nothing."""
    import re

    from apache_beam.portability.api import beam_runner_api_pb2

    from tfmusic import storage

    _write_dataset(tmp_path, str(tmp_path), ["song_a"])
    base = f"{gcs_bucket}/evaluate-graph"
    out, template = f"{base}/eval", f"{base}/evaluate-template.json"
    storage.write_bytes(f"{out}/manifest.json", b"{}")  # an existing output is left alone
    dataflow = ["--runner=DataflowRunner", "--project=tfmusic-test", "--region=us-central1",
                f"--temp_location={base}/tmp", f"--template_location={template}", "--sdk_location=container"]
    assert _evaluate(str(tmp_path / "data"), out, str(model_file), "--beam", *dataflow) == 0
    url = re.search(r'"pipelineUrl": "([^"]+)"', storage.read_text(template)).group(1)
    graph = beam_runner_api_pb2.Pipeline.FromString(storage.read_bytes(url))
    names = {t.unique_name for t in graph.components.transforms.values()}
    assert {"EvaluateSeparation/EvaluateTrack", "EvaluateSeparation/CountTracks",
            "EvaluateSeparation/FinalizeFiles/RenameIntoPlace", "EvaluateSeparation/WriteMetadata"} <= names
    assert storage.glob(f"{out}/*") == [f"{out}/manifest.json"]


def test_killed_run_leaves_no_results_and_a_rerun_matches(tmp_path):
    """SIGKILL to the driver once songs are staged: nothing finalized; a re-run equals a clean run."""
    import subprocess
    import sys
    import time

    names = [f"song_{i}" for i in range(6)]
    _write_dataset(tmp_path, str(tmp_path), names, channels=1)
    args = ["--data", str(tmp_path / "data"), "--targets", "bass", "--oracles", "mix", "--quiet"]
    assert main(["evaluate", *args, "--out", str(tmp_path / "clean")]) == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tfmusic", "evaluate", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ((out / ".staging").is_dir() and any((out / ".staging").rglob("*.json"))):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert not [p for p in out.rglob("*") if p.is_file() and ".staging" not in p.parts]
    assert main(["evaluate", *args, "--out", str(out)]) == 0
    assert local_tree(out) == local_tree(tmp_path / "clean")


def test_unusable_paths_fail_before_any_work(tmp_path, capsys):
    _write_dataset(tmp_path, str(tmp_path), ["song_a"])
    assert main(["evaluate", "--data", str(tmp_path / "data"), "--out", "nope://bucket/eval",
                 "--targets", "bass", "--oracles", "mix"]) == 2
    assert "unknown scheme 'nope://'" in capsys.readouterr().err
    assert main(["evaluate", "--data", "nope://bucket/data", "--out", str(tmp_path / "eval"),
                 "--targets", "bass", "--oracles", "mix"]) == 2
    assert "unknown scheme 'nope://'" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists() and not Path("nope:").exists()
