"""REST API as TF Serving serves it on ``--rest_api_port``.

Paths, JSON and codes follow ``model_servers/http_rest_api_util.cc``, ``http_rest_api_handler.cc``,
``http_server.cc`` and ``util/json_tensor.cc``: ``POST /v1/models/M[/versions/N|/labels/L]:predict``
(row ``instances`` or columnar ``inputs``), ``GET /v1/models/M[...]`` (status) and ``.../metadata``;
JSON of protos as protobuf prints them (status with the proto's JSON names, metadata with proto
field names, e.g. ``signature_name``, ``method_name``); errors as ``{"error": message}`` with the
status code mapped by `tfmusic.serving.errors.HTTP_STATUS` (INVALID_ARGUMENT and
FAILED_PRECONDITION 400, NOT_FOUND 404, RESOURCE_EXHAUSTED 429). An unknown signature or label is
INVALID_ARGUMENT here (the REST handler looks the signature up itself). Prometheus text is served
at the monitoring config's path when it is enabled.
"""

from __future__ import annotations

import json
import logging
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import numpy as np

from tfmusic.serving.config import MonitoringConfig
from tfmusic.serving.core import DEFAULT_SIGNATURE, ServingCore, Spec
from tfmusic.serving.errors import ServingError
from tfmusic.serving.tensors import array_to_json, json_to_array

log = logging.getLogger(__name__)

PREDICT_PATH = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                          r":(classify|regress|predict)")
STATUS_PATH = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                         r"(?:/(metadata))?")


def _proto_json(message, field_names: bool) -> Any:
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=field_names,
                                     always_print_fields_with_no_presence=True)


def _spec(name: str, version: str | None, label: str | None, signature: str = "") -> Spec:
    from urllib.parse import unquote

    return Spec(unquote(name), int(version) if version else None, unquote(label) if label else None, signature)


def status_json(core: ServingCore, spec: Spec) -> dict:
    """GetModelStatus as TF Serving's REST status page prints it."""
    from tensorflow_serving.apis import get_model_status_pb2

    from tfmusic.serving.errors import code_number

    response = get_model_status_pb2.GetModelStatusResponse()
    for version, state in core.status(spec):
        status = response.model_version_status.add(version=version)
        status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
        status.status.error_code = code_number(state.error_code)
        status.status.error_message = state.error_message
    return _proto_json(response, field_names=False)


def metadata_json(core: ServingCore, spec: Spec) -> dict:
    """GetModelMetadata as TF Serving's REST handler prints it (proto field names throughout)."""
    from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

    loaded = core.metadata(spec, ["signature_def"])
    model_spec = model_pb2.ModelSpec(name=spec.name)
    model_spec.version.value = loaded.version
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for key, sig in loaded.signature_defs.items():
        sig_map.signature_def[key].CopyFrom(sig)
    return {"model_spec": _proto_json(model_spec, True), "metadata": {"signature_def": _proto_json(sig_map, True)}}


def parse_predict_body(body: bytes, input_dtypes: dict[str, np.dtype]) -> tuple[dict[str, np.ndarray], bool]:
    """JSON body -> (inputs, row format?) with json_tensor.cc's typing: values must match the input dtype."""
    if not body.strip():
        raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as err:
        raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {err}") from err
    if not isinstance(doc, dict):
        raise ServingError("INVALID_ARGUMENT", "JSON Value: not formatted correctly. Expecting object.")
    names = sorted(input_dtypes)
    if ("instances" in doc) == ("inputs" in doc):
        raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key" if "instances" not in doc
                           else "Request can contain only one of 'inputs' or 'instances' key")
    if "instances" in doc:
        rows = doc["instances"]
        if not isinstance(rows, list) or not rows:
            raise ServingError("INVALID_ARGUMENT", "Expecting 'instances' to be an list/array")
        if isinstance(rows[0], dict):
            for i, row in enumerate(rows):
                if not isinstance(row, dict) or sorted(row) != names:
                    raise ServingError("INVALID_ARGUMENT", f"instance {i}: expecting an object with the named "
                                       f"inputs {names}")
            return {k: json_to_array(k, [r[k] for r in rows], input_dtypes[k]) for k in names}, True
        if len(names) != 1:
            raise ServingError("INVALID_ARGUMENT", f"instances must be objects naming the inputs {names}")
        return {names[0]: json_to_array(names[0], rows, input_dtypes[names[0]])}, True
    value = doc["inputs"]
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ServingError("INVALID_ARGUMENT", f"JSON object: does not have named input: {unknown[0]}")
        return {k: json_to_array(k, v, input_dtypes[k]) for k, v in value.items()}, False
    if len(names) != 1:
        raise ServingError("INVALID_ARGUMENT", f"'inputs' must be an object naming the inputs {names}")
    return {names[0]: json_to_array(names[0], value, input_dtypes[names[0]])}, False


def predict_json(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    if row_format:
        if len(outputs) == 1:
            return {"predictions": array_to_json(next(iter(outputs.values())))}
        n = len(next(iter(outputs.values())))
        return {"predictions": [{k: array_to_json(v[i]) for k, v in outputs.items()} for i in range(n)]}
    if len(outputs) == 1:
        return {"outputs": array_to_json(next(iter(outputs.values())))}
    return {"outputs": {k: array_to_json(v) for k, v in outputs.items()}}


def make_handler(core: ServingCore, monitoring: MonitoringConfig | None, max_body_bytes: int):
    """A ``BaseHTTPRequestHandler`` class serving the REST API over ``core``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # access lines at DEBUG; errors are logged by the caller
            log.debug("rest: " + fmt, *args)

        def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, err: ServingError) -> None:
            self._send(err.http_status, json.dumps({"error": err.message}, indent=1))

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length", 0))
            if length > max_body_bytes:
                raise ServingError("RESOURCE_EXHAUSTED", f"request body of {length} bytes is over the "
                                   f"{max_body_bytes}-byte limit")
            return self.rfile.read(length)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if monitoring is not None and monitoring.prometheus_enabled and path == monitoring.prometheus_path:
                return self._send(200, core.metrics.prometheus(), "text/plain")
            if not path.lower().startswith("/v1/"):
                return self._send(404, json.dumps({"error": f"no handler for {path}"}))
            try:
                match = STATUS_PATH.fullmatch(path)
                if not match:
                    raise ServingError("INVALID_ARGUMENT", f"Malformed request: GET {path}")
                name, version, label, metadata = match.groups()
                if not name:
                    raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
                spec = _spec(name, version, label)
                body = metadata_json(core, spec) if metadata else status_json(core, spec)
                self._send(200, json.dumps(body, indent=1))
            except ServingError as err:
                self._error(err)

        def do_POST(self):
            path = self.path.split("?", 1)[0]
            if not path.lower().startswith("/v1/"):
                return self._send(404, json.dumps({"error": f"no handler for {path}"}))
            start, spec, in_core = time.perf_counter(), None, False
            try:
                body = self._read_body()
                match = PREDICT_PATH.fullmatch(path)
                if not match:
                    raise ServingError("INVALID_ARGUMENT", f"Malformed request: POST {path}")
                name, version, label, method = match.groups()
                if method.lower() != "predict":
                    raise ServingError("UNIMPLEMENTED", f"{method} is not implemented by tfmusic serve")
                signature = _signature_name(body)
                spec = _spec(name, version, label, signature)
                loaded = core.manager.resolve(spec.name, spec.version, spec.label)
                sig = loaded.signatures.get(signature or DEFAULT_SIGNATURE)
                if sig is None:
                    raise ServingError("INVALID_ARGUMENT", f'Serving signature name: "{signature or DEFAULT_SIGNATURE}"'
                                       " not found in signature def")
                dtypes = {k: np.dtype(s.dtype.as_numpy_dtype) for k, s in sig.inputs.items()}
                inputs, row_format = parse_predict_body(body, dtypes)
                in_core = True  # from here on the core records the request itself
                _, _, outputs = core.predict(spec, inputs, None, "REST")
                self._send(200, json.dumps(predict_json(outputs, row_format)))
            except ServingError as err:
                if spec is not None and not in_core:
                    core.metrics.record_request(spec.name, "predict", "REST", err.code,
                                                (time.perf_counter() - start) * 1e6)
                self._error(err)

    return Handler


def _signature_name(body: bytes) -> str:
    try:
        doc = json.loads(body) if body.strip() else {}
    except json.JSONDecodeError:
        return ""
    value = doc.get("signature_name", "") if isinstance(doc, dict) else ""
    if not isinstance(value, str):
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {value!r} not formatted correctly. "
                           "'signature_name' key must be a string value.")
    return value
