"""Version policy of the embedded server: latest / specific / labels from models.config, and polling."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.test_export_saved_model import N_FFT, export_tiny_separator
from tfmusic.serving.client import ServingClient, ServingError
from tfmusic.serving.server import EmbeddedServer, parse_models_config

CONFIG = """
model_config_list {{
  config {{
    name: "sep"
    base_path: "/models/sep"
    model_platform: "tensorflow"
    {policy}
  }}
}}
"""
SPECIFIC = """model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }"""
LATEST = "model_version_policy { latest { num_versions: 1 } }"


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_parse_models_config(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(CONFIG.format(policy=SPECIFIC))
    (cfg,) = parse_models_config(path, repo=tmp_path / "repo")
    assert cfg.name == "sep" and cfg.base_path == tmp_path / "repo" / "sep"
    assert cfg.policy.kind == "specific" and cfg.policy.versions == (1, 2)
    assert cfg.labels == {"stable": 1, "canary": 2}
    assert cfg.policy.select([1, 2, 3]) == [1, 2]
    (cfg,) = parse_models_config(path)  # without a repo the path is used as written
    assert str(cfg.base_path) == "/models/sep"
    path.write_text("model_config_list { config { name: 'x' bogus: 1 } }")
    with pytest.raises(ValueError, match="models.config"):
        parse_models_config(path)


def test_specific_labels_latest_and_new_versions(tmp_path):
    repo = tmp_path / "repo"
    export_tiny_separator(repo, "sep", 1, seed=1)
    export_tiny_separator(repo, "sep", 2, seed=2)
    config = tmp_path / "models.config"
    config.write_text(CONFIG.format(policy=SPECIFIC))
    x = (0.1 * np.random.default_rng(0).standard_normal((1, 2, N_FFT))).astype(np.float32)
    server = EmbeddedServer(repo, config=config, port=0, poll_seconds=0.2)
    with server:
        def out(**kw):
            with ServingClient(server.address, "sep", retries=0, **kw) as c:
                return c.predict({"waveform": x})["vocals"]

        v1, v2 = out(version=1), out(version=2)
        assert not np.allclose(v1, v2)  # really two different models
        np.testing.assert_array_equal(out(version_label="stable"), v1)
        np.testing.assert_array_equal(out(version_label="canary"), v2)
        np.testing.assert_array_equal(out(), v2)  # no version: highest served
        with ServingClient(server.address, "sep", retries=0) as c:
            assert c.status() == [(1, "AVAILABLE", ""), (2, "AVAILABLE", "")]
        with pytest.raises(ServingError) as err:
            out(version_label="beta")
        assert err.value.code == "INVALID_ARGUMENT"  # server_core.cc: "Unrecognized servable version label"

        # switch the config to latest: version 1 is unloaded
        time.sleep(0.05)
        config.write_text(CONFIG.format(policy=LATEST))
        client = ServingClient(server.address, "sep", retries=0)
        wait_for(lambda: (1, "END", "") in client.status())
        with pytest.raises(ServingError) as err:
            out(version=1)
        assert err.value.code == "NOT_FOUND"

        # a new version appears on disk (atomically) and is picked up; version 2 goes away
        export_tiny_separator(repo, "sep", 3, seed=3)
        wait_for(lambda: (3, "AVAILABLE", "") in client.status())
        wait_for(lambda: (2, "END", "") in client.status())
        with ServingClient(server.address, "sep") as c:
            assert not np.allclose(c.predict({"waveform": x})["vocals"], v2)
        client.close()


def test_broken_version_is_reported_not_fatal(tmp_path):
    repo = tmp_path / "repo"
    export_tiny_separator(repo, "sep", 1)
    broken = repo / "sep" / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    with EmbeddedServer(repo, port=0, poll_seconds=0) as server:
        with ServingClient(server.address, "sep") as c:
            (status,) = c.status()
            assert status[0] == 2 and status[1] == "END" and "failed to load" in status[2]
            with pytest.raises(ServingError) as err:
                c.predict({"waveform": np.zeros((1, 2, N_FFT), np.float32)})
            assert err.value.code == "NOT_FOUND"


def test_shipped_serving_configs_parse():
    """serving/models.config and serving/batching.config are what TF Serving and `tfmusic serve` read."""
    from pathlib import Path

    from tfmusic.serving.server import parse_batching_config

    root = Path(__file__).resolve().parents[1] / "serving"
    configs = {c.name: c for c in parse_models_config(root / "models.config", repo="/tmp/repo")}
    assert sorted(configs) == ["separator", "vae"]
    assert configs["separator"].policy.kind == "latest"
    assert configs["vae"].labels == {"stable": 1} and configs["vae"].policy.versions == (1,)
    assert str(configs["vae"].base_path) == "/tmp/repo/vae"
    assert parse_batching_config(root / "batching.config").max_batch_size == 4
    assert 'path: "/monitoring/prometheus/metrics"' in (root / "monitoring.config").read_text()
