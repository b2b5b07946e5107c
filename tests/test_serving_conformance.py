"""One test per row of the conformance table in serving/README.md: the embedded server answers as TF Serving.

Each test names the TF Serving source file its expected behaviour is read from.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import grpc
import keras
import numpy as np
import pytest

from tests.test_export_saved_model import HOP, N_FFT, TinySeparator, export_tiny_separator, export_tiny_vae
from tfmusic.export import saved_model as sm
from tfmusic.serving import repository
from tfmusic.serving.batching import Batcher
from tfmusic.serving.config import BatchingConfig, MonitoringConfig
from tfmusic.serving.server import EmbeddedServer
from tfmusic.serving.tensors import from_tensor_proto, to_tensor_proto


def _server(repo, warmup=True, **batching):
    cfg = BatchingConfig(**{"max_batch_size": 4, "batch_timeout_micros": 1000, "num_batch_threads": 2, **batching})
    return EmbeddedServer(repo, port=0, rest_port=0, batching=cfg, poll_seconds=0, warmup=warmup,
                          monitoring=MonitoringConfig(prometheus_enabled=True))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    export_tiny_separator(repo)
    export_tiny_vae(repo)
    return repo


@pytest.fixture(scope="module")
def served(repo):
    with _server(repo) as server:
        yield server


def wav(batch=1, samples=N_FFT, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal((batch, 2, samples))).astype(np.float32)


def stubs(server):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 2**31 - 1),
                                                             ("grpc.max_receive_message_length", 2**31 - 1)])
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel), \
        model_service_pb2_grpc.ModelServiceStub(channel)


def predict_request(model="separator", inputs=None, signature="", version=None, label=None, output_filter=()):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for k, v in (inputs if inputs is not None else {"waveform": wav()}).items():
        request.inputs[k].CopyFrom(to_tensor_proto(v))
    request.output_filter.extend(output_filter)
    return request


def code_of(call, request):
    try:
        call(request, timeout=60)
        return "OK"
    except grpc.RpcError as err:
        return err.code().name


# -- Predict / ModelSpec (predict_impl.cc, predict_util.cc, server_core.cc) --------------------------------

@pytest.mark.parametrize("kwargs, code", [
    (dict(model="nope"), "NOT_FOUND"),                                # server_core.cc: servable not found
    (dict(version=7), "NOT_FOUND"),                                   # server_core.cc: Specific(m, 7)
    (dict(label="canary"), "INVALID_ARGUMENT"),                       # server_core.cc GetModelVersionForLabel
    (dict(model=""), "INVALID_ARGUMENT"),                             # server_core.cc: no name specified
    (dict(signature="nope"), "FAILED_PRECONDITION"),                  # predict_util.cc RunPredict
    (dict(inputs={"audio": wav()}), "INVALID_ARGUMENT"),              # predict_util.cc VerifyRequestInputsSize
    (dict(output_filter=["nope"]), "INVALID_ARGUMENT"),               # predict_util.cc PreProcessPrediction
    (dict(inputs={"waveform": wav(batch=5)}), "INVALID_ARGUMENT"),    # shared_batch_scheduler: task > max_batch_size
])
def test_predict_codes(served, kwargs, code):
    channel, predict, _ = stubs(served)
    with channel:
        assert code_of(predict.Predict, predict_request(**kwargs)) == code


def test_empty_predict_request_is_missing_model_spec(served):
    from tensorflow_serving.apis import predict_pb2

    channel, predict, _ = stubs(served)
    with channel, pytest.raises(grpc.RpcError) as err:
        predict.Predict(predict_pb2.PredictRequest(), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details() == "Missing ModelSpec"


def test_six_mib_request_is_accepted(served):
    """model_servers/server.cc: SetMaxMessageSize(INT32_MAX), so a 6 MiB Predict goes through."""
    channel, predict, _ = stubs(served)
    samples = 6 * 1024 * 1024 // 8 + HOP
    with channel:
        response = predict.Predict(predict_request(inputs={"waveform": wav(samples=samples)}), timeout=120)
    assert response.outputs["vocals"].tensor_shape.dim[2].size == samples


# -- GetModelStatus / GetModelMetadata (get_model_status_impl.cc, get_model_metadata_impl.cc) ----------------

def test_model_status_codes(served):
    from tensorflow_serving.apis import get_model_status_pb2

    channel, _, models = stubs(served)
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(), timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details() == "Missing ModelSpec"
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name, request.model_spec.version_label = "separator", "no-such-label"
        response = models.GetModelStatus(request, timeout=60)  # the label is ignored: every version
        assert [s.version for s in response.model_version_status] == [1]
        request.model_spec.version.value = 9
        assert code_of(models.GetModelStatus, request) == "NOT_FOUND"


def test_metadata_needs_a_field(served):
    from tensorflow_serving.apis import get_model_metadata_pb2

    channel, predict, _ = stubs(served)
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "separator"
    with channel:
        assert code_of(predict.GetModelMetadata, request) == "INVALID_ARGUMENT"
        request.metadata_field.append("signature_def")
        assert code_of(predict.GetModelMetadata, request) == "OK"


def test_unimplemented_rpcs_answer_unimplemented_with_one_log_line(served, caplog):
    from tensorflow_serving.apis import classification_pb2, inference_pb2, model_management_pb2, regression_pb2

    channel, predict, models = stubs(served)
    with channel, caplog.at_level("WARNING"):
        for call, request in [(predict.Classify, classification_pb2.ClassificationRequest()),
                              (predict.Regress, regression_pb2.RegressionRequest()),
                              (predict.MultiInference, inference_pb2.MultiInferenceRequest()),
                              (models.HandleReloadConfigRequest, model_management_pb2.ReloadConfigRequest())]:
            assert code_of(call, request) == "UNIMPLEMENTED"
    lines = [r for r in caplog.records if "not implemented" in r.getMessage()]
    assert len(lines) == 4 and not any(r.exc_info for r in caplog.records)


def test_health_check(served):
    """model_servers/server.cc: the default gRPC health service, SERVING for '', ModelService, PredictionService."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(served.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "ModelService", "PredictionService"):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


# -- Batching (batching_session.cc, batching_util.h, bundle_factory_util.h) ---------------------------------

def _concurrent(server, inputs_list, signature=""):
    channel, predict, _ = stubs(server)
    codes = [None] * len(inputs_list)

    def call(i):
        codes[i] = code_of(predict.Predict, predict_request(inputs=inputs_list[i], signature=signature))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs_list))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    channel.close()
    return codes


def test_different_lengths_in_one_batch_need_padding(repo):
    """batching_session.cc MergeInputTensors: FAILED_PRECONDITION without pad_variable_length_inputs."""
    inputs = [{"waveform": wav(samples=N_FFT)}, {"waveform": wav(samples=N_FFT + HOP)}]
    # no warmup replay: each of the repo's 6 warmup requests would wait out the 2 s batch window alone
    # (warmup under batching: test_every_exported_warmup_loads_under_batching)
    with _server(repo, warmup=False, batch_timeout_micros=2_000_000) as server:
        assert _concurrent(server, inputs) == ["FAILED_PRECONDITION"] * 2
    with _server(repo, warmup=False, batch_timeout_micros=2_000_000, pad_variable_length_inputs=True) as server:
        assert _concurrent(server, inputs) == ["OK"] * 2


def test_large_batch_splitting(repo):
    """bundle_factory_util.h GetQueueOptions: max_batch_size bounds a request; with splitting, batches run
    at most max_execution_batch_size examples and the request's outputs are concatenated in order: 5
    examples run as 3 batches and answer what the SavedModel itself answers."""
    import tensorflow as tf

    x = wav(batch=5)
    want = tf.saved_model.load(str(repo / "separator" / "1")).signatures["serving_default"](waveform=tf.constant(x))
    with _server(repo, max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=2) as server:
        histogram = server.core.metrics.processed_batch_size
        before = histogram._cells.get((), [[], 0.0])
        batches_before, examples_before = sum(before[0]), before[1]
        channel, predict, _ = stubs(server)
        with channel:
            response = predict.Predict(predict_request(inputs={"waveform": x}), timeout=60)
            after = histogram._cells[()]
            assert (sum(after[0]) - batches_before, after[1] - examples_before) == (3, 5)  # 2 + 2 + 1 examples
            assert code_of(predict.Predict, predict_request(inputs={"waveform": wav(batch=9)})) == "INVALID_ARGUMENT"
    assert set(response.outputs) == set(want)
    for name, tensor in response.outputs.items():
        np.testing.assert_allclose(from_tensor_proto(tensor), want[name].numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_split_request_runs_in_execution_sized_batches_in_order():
    """batching_session.cc SplitInputTask, at the Batcher: the model sees batches of at most
    max_execution_batch_size examples, and the request's outputs are its pieces' in request order."""
    seen = []

    def model(inputs: dict) -> dict:
        seen.append(inputs["x"][:, 0].tolist())
        return {"y": 10 * inputs["x"]}

    batcher = Batcher(BatchingConfig(max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=2,
                                     num_batch_threads=1))
    try:
        x = np.arange(10, dtype=np.float32).reshape(5, 2)
        out = batcher.run("key", model, {"x": x})
    finally:
        batcher.close()
    assert sorted(seen) == [[0, 2], [4, 6], [8]]
    np.testing.assert_array_equal(out["y"], 10 * x)


def test_inputs_without_a_batch_dimension_fail_under_batching(repo, tmp_path):
    """batching_util.h ComputeTensorBatchSize: every input needs dimension 0, all of one size; a warmup
    record breaking that fails the version's load (saved_model_warmup_util.cc runs it through batching)."""
    import shutil

    version = tmp_path / "vae" / "1"
    shutil.copytree(repo / "vae" / "1", version)
    x = np.zeros((2, 16), np.int32)
    repository.write_warmup(version, "vae", [("traverse", {"x": x, "dimension": np.array([1], np.int32),
                                                           "values": np.zeros((2, 3), np.float32)})])
    with _server(tmp_path) as server:
        (v, state), = server.manager.statuses("vae")
        assert state.state == "END" and state.error_code == "INVALID_ARGUMENT"
    with EmbeddedServer(tmp_path, port=0, poll_seconds=0) as server:  # no batching: it loads
        assert server.manager.statuses("vae")[0][1].state == "AVAILABLE"


def test_every_exported_warmup_loads_under_batching(served):
    """Both exported kinds (separator, VAE incl. traverse) load with batching on and their warmup replayed."""
    assert {m: [v for v, s in served.manager.statuses(m) if s.state == "AVAILABLE"]
            for m in ("separator", "vae")} == {"separator": [1], "vae": [1]}
    for model in ("separator", "vae"):
        for request in repository.read_warmup(served.repo / model / "1"):
            for tensor in request.inputs.values():
                assert len(tensor.tensor_shape.dim) >= 1


class ReflectSeparator(TinySeparator):
    """Reflect padding like the real STFT: inputs of n_fft // 2 samples or fewer cannot run."""

    def call(self, waveform, training=False):
        padded = keras.ops.pad(waveform, ((0, 0), (0, 0), (N_FFT // 2, N_FFT // 2)), mode="reflect")
        return super().call(padded[:, :, N_FFT // 2: -N_FFT // 2], training)


def test_too_short_input_names_the_minimum(tmp_path):
    keras.utils.set_random_seed(0)
    model = ReflectSeparator()
    model(np.zeros((1, 2, N_FFT), np.float32))
    path, _ = sm.export_separator(model, tmp_path, "sep", 1, example_samples=N_FFT + HOP)
    assert sm.read_metadata(path)["min_samples"] == N_FFT // 2 + 1
    with EmbeddedServer(tmp_path, port=0, poll_seconds=0) as server:
        channel, predict, _ = stubs(server)
        with channel, pytest.raises(grpc.RpcError) as err:
            predict.Predict(predict_request("sep", {"waveform": wav(samples=HOP)}), timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"at least {N_FFT // 2 + 1} samples" in err.value.details()


# -- REST (http_rest_api_handler.cc, http_rest_api_util.cc, http_server.cc, json_tensor.cc) -----------------

def rest(server, path, body=None):
    url = f"http://{server.rest_address}{path}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("path, body, status", [
    ("/v1/models/vae:predict", {"signature_name": "nope", "instances": [[0] * 16]}, 400),  # INVALID_ARGUMENT
    ("/v1/models/vae/labels/nope:predict", {"signature_name": "encode", "instances": [[0] * 16]}, 400),
    ("/v1/models/nope:predict", {"instances": [[0] * 16]}, 404),
    ("/v1/models/vae:predict", {"signature_name": "encode", "instances": [[0.5] * 16]}, 400),  # float for int32
    ("/v1/models/separator:predict", {"instances": wav(batch=5).tolist()}, 400),  # task size > max_batch_size
    ("/v1/models/vae:predict", {"signature_name": "encode", "instances": [[1] * 16]}, 200),
])
def test_rest_codes(served, path, body, status):
    code, doc = rest(served, path, body)
    assert code == status, doc
    assert ("error" in doc) == (status != 200)


def test_rest_resource_exhausted_is_429(repo):
    with EmbeddedServer(repo, port=0, rest_port=0, poll_seconds=0, max_message_bytes=1024) as server:
        code, doc = rest(server, "/v1/models/separator:predict", {"instances": wav().tolist()})
    assert code == 429 and "error" in doc


def test_rest_json_uses_proto_field_names(served):
    code, meta = rest(served, "/v1/models/vae/metadata")
    assert code == 200
    assert meta["model_spec"] == {"name": "vae", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["traverse"]
    assert sig["method_name"] == "tensorflow/serving/predict" and "tensor_shape" in sig["inputs"]["dimension"]
    code, status = rest(served, "/v1/models/vae")
    assert status == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                "status": {"error_code": "OK", "error_message": ""}}]}


def test_prometheus_metric_names(served):
    rest(served, "/v1/models/vae:predict", {"signature_name": "encode", "instances": [[1] * 16]})
    with urllib.request.urlopen(f"http://{served.rest_address}/monitoring/prometheus/metrics", timeout=30) as resp:
        text = resp.read().decode()
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="vae",status="OK"}' in text
    assert '# TYPE :tensorflow:serving:request_latency histogram' in text
    assert ':tensorflow:serving:request_latency_bucket{model_name="vae",API="predict",entrypoint="REST",le="10"}' \
        in text
    assert ":tensorflow:serving:batching_session:wrapped_run_count{} " in text
