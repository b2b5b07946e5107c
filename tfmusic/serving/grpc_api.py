"""gRPC API: TF Serving's PredictionService and ModelService, plus the standard ``grpc.health.v1`` service.

Request protos are turned into `ServingCore` calls; a `ServingError` becomes the gRPC status with
its code. A request without ``model_spec`` is INVALID_ARGUMENT "Missing ModelSpec"
(``predict_impl.cc``, ``get_model_status_impl.cc``). The RPCs the embedded server does not
implement (Classify, Regress, MultiInference, HandleReloadConfigRequest) answer UNIMPLEMENTED
with one log line. Health: TF Serving (with ``--enable_grpc_healthcheck_service``) reports
SERVING for the services ``""``, ``ModelService`` and ``PredictionService`` (``model_servers/server.cc``).
"""

from __future__ import annotations

import logging

from tfmusic.serving.core import DEFAULT_SIGNATURE, ServingCore, spec_from_proto
from tfmusic.serving.errors import ServingError, code_number
from tfmusic.serving.tensors import from_tensor_proto, to_tensor_proto

log = logging.getLogger(__name__)

HEALTH_SERVICES = ("", "ModelService", "PredictionService")


def _abort(context, err: ServingError):
    import grpc

    context.abort(getattr(grpc.StatusCode, err.code, grpc.StatusCode.UNKNOWN), err.message)


class _OneLineDecodeErrors(logging.Filter):
    """grpc logs a traceback at ERROR for every request whose bytes are not a valid proto (then
    answers INTERNAL, as TF Serving does, which logs nothing). A peer's bad bytes are not a server
    fault: keep one WARNING line with the parse error; any other exception keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from google.protobuf.message import DecodeError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, DecodeError) and str(record.msg).startswith("Exception deserializing"):
            record.msg, record.args = "gRPC message is not a valid protobuf (%s); answered INTERNAL", (exc,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_decode_errors() -> None:
    grpc_log = logging.getLogger("grpc._common")  # where grpc's deserialize() logs
    if not any(isinstance(f, _OneLineDecodeErrors) for f in grpc_log.filters):
        grpc_log.addFilter(_OneLineDecodeErrors())


def _unimplemented(service: str, method: str):
    def handler(self, request, context):
        import grpc

        log.warning("%s/%s is not implemented by the embedded server; answered UNIMPLEMENTED", service, method)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by tfmusic serve "
                      "(use Predict, or TF Serving itself)")

    handler.__name__ = method
    return handler


def make_prediction_servicer(core: ServingCore, max_message_bytes: int):
    """A ``PredictionServiceServicer`` over ``core``."""
    from google.protobuf import any_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            try:
                if not request.HasField("model_spec"):
                    raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
                spec = spec_from_proto(request.model_spec)
                try:
                    inputs = {k: from_tensor_proto(v) for k, v in request.inputs.items()}
                except (TypeError, ValueError, KeyError) as err:
                    raise ServingError("INVALID_ARGUMENT", f"cannot decode input tensor: {err}") from err
                loaded, signature, outputs = core.predict(spec, inputs, list(request.output_filter), "GRPC")
                response = predict_pb2.PredictResponse()
                response.model_spec.name = spec.name
                response.model_spec.version.value = loaded.version
                response.model_spec.signature_name = signature
                for k, v in outputs.items():
                    response.outputs[k].CopyFrom(to_tensor_proto(v))
                size = response.ByteSize()
                if size > max_message_bytes:
                    raise ServingError("RESOURCE_EXHAUSTED", f"response of {size} bytes is over the "
                                       f"{max_message_bytes}-byte message limit; send smaller requests")
                return response
            except ServingError as err:
                _abort(context, err)

        def GetModelMetadata(self, request, context):
            try:
                if not request.HasField("model_spec"):
                    raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
                spec = spec_from_proto(request.model_spec)
                loaded = core.metadata(spec, list(request.metadata_field))
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = spec.name
                response.model_spec.version.value = loaded.version
                sig_map = get_model_metadata_pb2.SignatureDefMap()
                for k, v in loaded.signature_defs.items():
                    sig_map.signature_def[k].CopyFrom(v)
                packed = any_pb2.Any()
                packed.Pack(sig_map)
                response.metadata["signature_def"].CopyFrom(packed)
                return response
            except ServingError as err:
                _abort(context, err)

        Classify = _unimplemented("PredictionService", "Classify")
        Regress = _unimplemented("PredictionService", "Regress")
        MultiInference = _unimplemented("PredictionService", "MultiInference")

    return PredictionServicer()


def make_model_servicer(core: ServingCore):
    """A ``ModelServiceServicer`` over ``core`` (GetModelStatus)."""
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            try:
                if not request.HasField("model_spec"):
                    raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
                response = get_model_status_pb2.GetModelStatusResponse()
                for version, state in core.status(spec_from_proto(request.model_spec)):
                    status = response.model_version_status.add()
                    status.version = version
                    status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
                    status.status.error_code = code_number(state.error_code)
                    status.status.error_message = state.error_message
                return response
            except ServingError as err:
                _abort(context, err)

        HandleReloadConfigRequest = _unimplemented("ModelService", "HandleReloadConfigRequest")

    return ModelServicer()


def add_services(server, core: ServingCore, max_message_bytes: int) -> None:
    """Register PredictionService, ModelService and grpc.health.v1.Health on a ``grpc.Server``."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        make_prediction_servicer(core, max_message_bytes), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(make_model_servicer(core), server)
    health_servicer = health.HealthServicer()
    for name in HEALTH_SERVICES:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    _quiet_decode_errors()


__all__ = ["add_services", "make_model_servicer", "make_prediction_servicer", "DEFAULT_SIGNATURE", "HEALTH_SERVICES"]
