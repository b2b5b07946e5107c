"""Embedded server + gRPC client: round trips with the tensorflow-serving-api stubs, error codes, REST."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from tests.test_export_saved_model import HOP, N_FFT, export_tiny_separator, export_tiny_vae, make_separator, make_vae
from tfmusic.serving.batching import Batcher
from tfmusic.serving.client import ServingClient, ServingError
from tfmusic.serving.config import BatchingConfig, MonitoringConfig, parse_batching_config
from tfmusic.serving.server import EmbeddedServer
from tfmusic.serving.tensors import from_tensor_proto, to_tensor_proto

MAX_MESSAGE = 256 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    export_tiny_separator(repo)
    export_tiny_vae(repo)
    batching = BatchingConfig(max_batch_size=4, batch_timeout_micros=20000, num_batch_threads=2)
    server = EmbeddedServer(repo, port=0, rest_port=0, batching=batching, poll_seconds=0,
                            max_message_bytes=MAX_MESSAGE, monitoring=MonitoringConfig(prometheus_enabled=True))
    with server:
        yield server


def wav(batch=1, samples=N_FFT + 3 * HOP, seed=0, channels=2, dtype=np.float32):
    return (0.2 * np.random.default_rng(seed).standard_normal((batch, channels, samples))).astype(dtype)


def test_tensor_proto_round_trip():
    for arr in (np.arange(6, dtype=np.float32).reshape(2, 3), np.array(3, np.int32), np.zeros((0, 2), np.int64),
                np.array([True, False])):
        back = from_tensor_proto(to_tensor_proto(arr))
        assert back.dtype == arr.dtype and back.shape == arr.shape
        np.testing.assert_array_equal(back, arr)
    proto = to_tensor_proto(np.zeros((2, 2), np.float32))
    proto.ClearField("tensor_content")
    proto.float_val.append(1.5)  # TF convention: last value repeats
    np.testing.assert_array_equal(from_tensor_proto(proto), np.full((2, 2), 1.5, np.float32))


def test_predict_metadata_status_round_trip(served):
    with ServingClient(served.address, "separator") as client:
        x = wav(batch=2)
        out = client.predict({"waveform": x})
        want = make_separator()(x)
        assert sorted(out) == ["drums", "vocals"]
        for t in out:
            np.testing.assert_allclose(out[t], np.asarray(want[t]), atol=1e-5)
        act = client.predict({"waveform": x}, signature="activity")
        np.testing.assert_allclose(act["vocals"], np.asarray(want["vocals_activity"]), atol=1e-5)
        only = client.predict({"waveform": x}, output_filter=["vocals"])
        assert list(only) == ["vocals"]
        meta = client.metadata()
        assert sorted(meta) == ["activity", "serving_default"]
        assert meta["serving_default"].inputs == {"waveform": ("DT_FLOAT", (-1, 2, -1))}
        assert client.targets() == ["drums", "vocals"]
        assert client.status() == [(1, "AVAILABLE", "")]
    with ServingClient(served.address, "vae") as client:
        x = np.random.default_rng(1).integers(0, 12, (3, 16)).astype(np.int32)
        enc = client.predict({"x": x}, signature="encode")
        mean, log_std = make_vae().encode(x)
        np.testing.assert_allclose(enc["mean"], np.asarray(mean), atol=1e-5)
        trav = client.predict({"x": x[:1], "dimension": np.array([1], np.int32),
                               "values": np.linspace(-1, 1, 4).astype(np.float32)[None]}, signature="traverse")
        assert trav["logits"].shape == (1, 4, 16, 12)


@pytest.mark.parametrize("kwargs, inputs, signature, code", [
    (dict(model="nope"), None, "serving_default", "NOT_FOUND"),
    (dict(model="separator", version=7), None, "serving_default", "NOT_FOUND"),
    (dict(model="separator", version_label="canary"), None, "serving_default", "INVALID_ARGUMENT"),
    (dict(model="separator"), None, "no_such_signature", "FAILED_PRECONDITION"),
    (dict(model="separator"), {"waveform": wav(dtype=np.float64)}, "serving_default", "INVALID_ARGUMENT"),
    (dict(model="separator"), {"waveform": wav(channels=3)}, "serving_default", "INVALID_ARGUMENT"),
    (dict(model="separator"), {"waveform": wav()[0]}, "serving_default", "INVALID_ARGUMENT"),
    (dict(model="separator"), {"audio": wav()}, "serving_default", "INVALID_ARGUMENT"),
])
def test_bad_requests_get_tf_serving_codes(served, kwargs, inputs, signature, code):
    model = kwargs.pop("model")
    with ServingClient(served.address, model, retries=0, **kwargs) as client:
        with pytest.raises(ServingError) as err:
            client.predict(inputs or {"waveform": wav()}, signature=signature)
    assert err.value.code == code, str(err.value)
    assert model in str(err.value)


def test_oversized_request_is_resource_exhausted(served):
    """A raw stub (no client-side size check) sending more than the server's limit."""
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "separator"
    request.inputs["waveform"].CopyFrom(to_tensor_proto(wav(samples=MAX_MESSAGE // 4)))  # 2x the limit
    with grpc.insecure_channel(served.address, options=[("grpc.max_send_message_length", 8 * MAX_MESSAGE)]) as ch:
        with pytest.raises(grpc.RpcError) as err:
            prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # a request that fits but whose two stems do not fit in the response is refused the same way
    with ServingClient(served.address, "separator", retries=0, max_message_bytes=4 * MAX_MESSAGE) as client:
        with pytest.raises(ServingError) as err2:
            client.predict({"waveform": wav(samples=MAX_MESSAGE // 12)})
    assert err2.value.code == "RESOURCE_EXHAUSTED"


def test_long_audio_is_chunked_under_the_limit(served):
    """~3x the message limit of audio goes through in several requests and matches local chunking."""
    from tfmusic.audio.chunking import separate_in_chunks

    audio = wav(samples=3 * MAX_MESSAGE // 8, seed=5)[0]
    with ServingClient(served.address, "separator", max_message_bytes=MAX_MESSAGE) as client:
        limit = client.chunk_samples(2, 2, 4096)
        assert 2 * limit < audio.shape[1]  # really several requests
        stems = client.separate(audio)
    model = make_separator()
    chunk = max(1024, limit // 1024 * 1024)
    want = separate_in_chunks(audio, lambda p: {k: np.asarray(v)[0] for k, v in model(p[None]).items()
                                                if not k.endswith("_activity")},
                              chunk_samples=chunk, overlap_samples=4096, min_samples=4096, progress=False)
    assert sorted(stems) == ["drums", "vocals"]
    for t in stems:
        assert stems[t].shape == audio.shape
        np.testing.assert_allclose(stems[t], want[t], atol=1e-5)


def test_concurrent_requests_are_batched_correctly(served):
    xs = [wav(seed=s) for s in range(8)]
    results = [None] * len(xs)
    client = ServingClient(served.address, "separator")

    def call(i):
        results[i] = client.predict({"waveform": xs[i]})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    model = make_separator()
    for x, out in zip(xs, results):
        np.testing.assert_allclose(out["vocals"], np.asarray(model(x)["vocals"]), atol=1e-5)


def test_batcher_merges_and_splits():
    batcher = Batcher(BatchingConfig(max_batch_size=4, batch_timeout_micros=5_000_000, num_batch_threads=1))
    calls = []

    def fn(inputs):
        calls.append(inputs["x"].shape[0])
        return {"y": inputs["x"] * 2}

    results = {}

    def submit(i):
        results[i] = batcher.run("k", fn, {"x": np.full((1, 3), i, np.float32)})

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [4]  # four requests, one call: a full batch does not wait for the timeout
    for i in range(4):
        np.testing.assert_array_equal(results[i]["y"], np.full((1, 3), 2 * i, np.float32))
    batcher.close()
    failing = Batcher(BatchingConfig(max_batch_size=2, batch_timeout_micros=0))
    with pytest.raises(ZeroDivisionError):
        failing.run("k", lambda inputs: 1 / 0, {"x": np.zeros((1,))})
    failing.close()


def test_batching_config_file(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000 }\n"
                    "num_batch_threads { value: 3 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n")
    cfg = parse_batching_config(path)
    assert (cfg.max_batch_size, cfg.batch_timeout_micros, cfg.num_batch_threads) == (16, 1000, 3)
    assert cfg.allowed_batch_sizes == (8, 16)
    path.write_text("max_batch_sise { value: 16 }\n")
    with pytest.raises(ValueError, match="max_batch_sise"):
        parse_batching_config(path)


def test_rest_predict_status_metadata_metrics(served):
    base = f"http://127.0.0.1:{served.rest_port}"
    x = np.random.default_rng(2).integers(0, 12, (2, 16)).astype(np.int32)
    body = json.dumps({"signature_name": "encode", "instances": x.tolist()}).encode()
    req = urllib.request.Request(f"{base}/v1/models/vae/versions/1:predict", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        preds = json.loads(resp.read())["predictions"]
    mean, _ = make_vae().encode(x)
    np.testing.assert_allclose([p["mean"] for p in preds], np.asarray(mean), atol=1e-5)
    with urllib.request.urlopen(f"{base}/v1/models/vae", timeout=30) as resp:
        assert json.loads(resp.read())["model_version_status"][0]["state"] == "AVAILABLE"
    with urllib.request.urlopen(f"{base}/v1/models/vae/metadata", timeout=30) as resp:
        assert "traverse" in json.loads(resp.read())["metadata"]["signature_def"]["signature_def"]
    bad = urllib.request.Request(f"{base}/v1/models/nope:predict", data=b'{"instances": [1]}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=30)
    assert err.value.code == 404
    with urllib.request.urlopen(f"{base}/monitoring/prometheus/metrics", timeout=30) as resp:
        text = resp.read().decode()
    assert ':tensorflow:serving:request_count{model_name="vae",status="OK"}' in text


def test_binds_loopback_by_default(tmp_path):
    export_tiny_vae(tmp_path)
    server = EmbeddedServer(tmp_path, port=0, poll_seconds=0)
    assert server.host == "127.0.0.1"
    with server:
        assert server.address.startswith("127.0.0.1:")
