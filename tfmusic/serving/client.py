"""gRPC client for TF Serving's PredictionService / ModelService (and tfmusic's embedded server).

The same client talks to a real ``tensorflow_model_server`` and to ``tfmusic serve`` because both
speak the ``tensorflow-serving-api`` protos. Long audio is cut into chunks whose request *and*
response fit under the gRPC message-size limit, sent one by one, and stitched back with the
project's one overlap-add (`tfmusic.audio.chunking`). Transient failures (UNAVAILABLE,
DEADLINE_EXCEEDED) are retried with a per-attempt deadline, and with ``deadline`` for as long as
that overall budget lasts (a server restarted mid-song is waited for; every RPC here is
idempotent); everything else raises `ServingError` naming the model, signature, gRPC code and
the server's message.

Tensor conversion lives in `tfmusic.serving.tensors` (shared with the server and the exporter);
errors are `tfmusic.serving.errors.ServingError`, which the CLI turns into its own error.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from tfmusic.serving.errors import ServingError
from tfmusic.serving.repository import ACTIVITY_SUFFIX, PITCH_SUFFIX, TRANSCRIBE
from tfmusic.serving.tensors import (SignatureInfo, dtype_name, from_tensor_proto, numpy_dtype,  # noqa: F401
                                     signature_info, to_tensor_proto)

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # gRPC's default receive limit
RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")


# Every request carries at least this many samples (short songs and tails are zero-padded by the
# chunk driver): TF Serving's metadata cannot say a signature's minimum length (IASS needs 10,240
# samples at the default STFT, Open-Unmix 2,049; see serving/README.md), so the client stays above all.
CLIENT_MIN_SAMPLES = 16_384


class ServingClient:
    """Predict / GetModelMetadata / GetModelStatus against one model on a TF Serving endpoint.

    ``version`` or ``version_label`` pick a version (default: the server's policy, normally latest).
    ``timeout`` is the deadline of each attempt in seconds; ``retries`` extra attempts are made for
    UNAVAILABLE / DEADLINE_EXCEEDED with exponential backoff (capped at 2 s). With ``deadline``
    (seconds per call, all attempts together) attempts go on until that budget is spent, however
    many that takes, and no attempt outlives it.
    """

    def __init__(self, address: str, model: str, *, version: int | None = None,
                 version_label: str | None = None, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 0.25, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 deadline: float | None = None) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        if version is not None and version_label is not None:
            raise ValueError("give either version or version_label, not both")
        if ":" not in address:
            raise ValueError(f"server address {address!r} must be host:port")
        self.address = address
        self.model = model
        self.version = version
        self.version_label = version_label
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_message_bytes = int(max_message_bytes)
        self.deadline = float(deadline) if deadline is not None else None
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds, got {deadline}")
        # reconnect quickly after a server restart (gRPC's default backoff grows to 120 s)
        options = [("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                   ("grpc.max_reconnect_backoff_ms", 2000)]
        self._channel = grpc.insecure_channel(address, options=options)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._metadata_cache: dict[str, SignatureInfo] | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _model_spec(self, spec, signature: str | None = None) -> None:
        spec.name = self.model
        if self.version is not None:
            spec.version.value = int(self.version)
        if self.version_label is not None:
            spec.version_label = self.version_label
        if signature is not None:
            spec.signature_name = signature

    def _where(self, signature: str | None = None) -> str:
        where = f"model {self.model!r}"
        if self.version is not None:
            where += f" version {self.version}"
        if self.version_label is not None:
            where += f" label {self.version_label!r}"
        if signature:
            where += f" signature {signature!r}"
        return f"{where} at {self.address}"

    def _call(self, method, request, what: str):
        import grpc

        attempt = 0
        began = time.monotonic()
        end = began + self.deadline if self.deadline is not None else None
        while True:
            timeout = self.timeout if end is None else max(0.001, min(self.timeout, end - time.monotonic()))
            try:
                return method(request, timeout=timeout)
            except grpc.RpcError as err:
                code = err.code().name if err.code() is not None else "UNKNOWN"
                delay = min(2.0, self.backoff * (2 ** attempt))
                if code in RETRYABLE and (attempt < self.retries if end is None
                                          else time.monotonic() + delay < end):
                    log.warning("%s failed with %s (%s); retry %d in %.2fs", what, code, err.details(),
                                attempt + 1, delay)
                    time.sleep(delay)
                    attempt += 1
                    continue
                hint = ""
                if code in RETRYABLE and attempt:
                    hint = f" (gave up after {attempt + 1} attempts in {time.monotonic() - began:.1f} s"
                    hint += f" of a {self.deadline:g} s deadline)" if end is not None else ")"
                if code == "UNAVAILABLE":
                    hint += " (is the server running? start one with `tfmusic serve --models REPO`)"
                elif code == "RESOURCE_EXHAUSTED":
                    hint += f" (message over the {self.max_message_bytes}-byte limit: send smaller chunks)"
                raise ServingError(code, f"{what} on {self._where()}: {err.details()}{hint}") from None

    # -- RPCs -------------------------------------------------------------------------------
    def predict(self, inputs: Mapping[str, Any], signature: str = "serving_default",
                output_filter: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """One Predict call; returns every output (or those in ``output_filter``) as numpy."""
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(to_tensor_proto(value))
        if output_filter:
            request.output_filter.extend(output_filter)
        size = request.ByteSize()
        if size > self.max_message_bytes:
            raise ServingError("RESOURCE_EXHAUSTED", f"request of {size} bytes for {self._where(signature)} is "
                               f"over the {self.max_message_bytes}-byte message limit; send smaller chunks")
        response = self._call(self._predict.Predict, request, f"Predict {signature!r}")
        return {key: from_tensor_proto(value) for key, value in response.outputs.items()}

    def metadata(self, refresh: bool = False) -> dict[str, SignatureInfo]:
        """Signatures of the model as GetModelMetadata reports them (cached)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        if self._metadata_cache is not None and not refresh:
            return self._metadata_cache
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._call(self._predict.GetModelMetadata, request, "GetModelMetadata")
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(sig_map):
            raise ServingError("INTERNAL", f"GetModelMetadata on {self._where()} returned no SignatureDefMap")
        self._metadata_cache = {k: signature_info(v) for k, v in sig_map.signature_def.items()}
        return self._metadata_cache

    def status(self) -> list[tuple[int, str, str]]:
        """``(version, state, error message)`` for each version the server knows of."""
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec)
        response = self._call(self._models.GetModelStatus, request, "GetModelStatus")
        names = get_model_status_pb2.ModelVersionStatus.State
        return [(int(s.version), names.Name(s.state), s.status.error_message)
                for s in response.model_version_status]

    def wait_until_available(self, timeout: float = 60.0) -> int:
        """Block until some version is AVAILABLE; returns it. Raises ``ServingError`` on timeout."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                available = [v for v, state, _ in self.status() if state == "AVAILABLE"]
                if available:
                    return max(available)
                last = "no AVAILABLE version yet"
            except ServingError as err:
                last = str(err)
            time.sleep(0.2)
        raise ServingError("DEADLINE_EXCEEDED", f"{self._where()} not available after {timeout:.0f}s: {last}")

    # -- separation -------------------------------------------------------------------------
    def targets(self, signature: str = "serving_default") -> list[str]:
        """Output names of the separation signature (one per target)."""
        sigs = self.metadata()
        if signature not in sigs:
            raise ServingError("NOT_FOUND", f"{self._where()} has no signature {signature!r}; "
                               f"it has {sorted(sigs)}")
        return sorted(sigs[signature].outputs)

    def chunk_samples(self, channels: int, n_outputs: int, overlap: int) -> int:
        """Largest chunk whose float32 request and response both fit the message limit (with headroom)."""
        budget = int(self.max_message_bytes * 0.9) - 4096
        per_sample = 4 * channels * max(1, n_outputs)
        chunk = budget // per_sample
        if chunk <= 2 * overlap:
            raise ServingError("RESOURCE_EXHAUSTED", f"a {self.max_message_bytes}-byte message cannot carry "
                               f"{channels} channel(s) x {n_outputs} output(s) with {overlap} samples of overlap")
        return int(chunk)

    def separate(self, waveform: np.ndarray, *, signature: str = "serving_default", activity: bool = False,
                 pitch: bool = False, chunk_samples: int | None = None, overlap_samples: int = 4096,
                 min_samples: int = CLIENT_MIN_SAMPLES,
                 sink=None, progress: bool = False) -> dict[str, np.ndarray]:
        """Separate a ``(channels, samples)`` float32 waveform (44.1 kHz) -> ``{target: (channels, samples)}``.

        Each chunk is one Predict request sized so request and response fit the message limit;
        chunks are crossfaded back together by `tfmusic.audio.chunking.separate_in_chunks`
        (``sink`` streams finished segments as there). With ``activity`` and a model that has an
        ``activity`` signature, ``{target}_activity`` frame curves ``(1 + samples // 1024,)`` are
        added (a second request per chunk); with ``pitch`` and an IASS+pitch model,
        ``{target}_pitch`` ``(88, frames)`` too. A model with the ``transcribe`` signature (stems and
        every curve at once) answers both in the one request per chunk.
        """
        from tfmusic.audio.chunking import separate_in_chunks

        wav = np.asarray(waveform, dtype=np.float32)
        if wav.ndim != 2:
            raise ValueError(f"waveform must be (channels, samples), got shape {wav.shape}")
        targets = self.targets(signature)
        sigs = self.metadata()
        with_activity = activity and "activity" in sigs
        with_pitch = pitch and "pitch" in sigs
        at_once = signature == "serving_default" and TRANSCRIBE in sigs and (with_activity or with_pitch)
        # a pitch curve is 88 floats per 1024 samples: budgeted as one more mono output, which over-counts it
        curves = len(sigs["pitch"].outputs) if with_pitch else 0
        limit = self.chunk_samples(wav.shape[0], len(targets) + curves, overlap_samples)
        # whole hops, rounded down, because separate_in_chunks rounds chunk lengths up to hops
        chunk = max(1024, min(chunk_samples or limit, limit) // 1024 * 1024)
        min_samples = min(min_samples, chunk)  # a message limit below the model's minimum cannot be helped
        shape = sigs[signature].inputs.get("waveform", ("", None))[1]
        fixed = shape[-1] if shape and len(shape) == 3 and shape[-1] > 0 else None
        if fixed:  # fixed-length signature: every request carries exactly `fixed` samples
            if fixed > limit:
                raise ServingError("RESOURCE_EXHAUSTED", f"{self._where(signature)} takes {fixed}-sample requests, "
                                   f"over what a {self.max_message_bytes}-byte message carries ({limit})")
            chunk = min_samples = fixed
            overlap_samples = min(overlap_samples, fixed // 2)

        wanted = set(targets) | {f"{t}{ACTIVITY_SUFFIX}" for t in targets if with_activity} \
            | {f"{t}{PITCH_SUFFIX}" for t in targets if with_pitch}

        def one_chunk(piece: np.ndarray) -> dict[str, np.ndarray]:
            if at_once:
                out = self.predict({"waveform": piece[None]}, signature=TRANSCRIBE)
                return {k: v[0] for k, v in out.items() if k in wanted}
            out = {k: v[0] for k, v in self.predict({"waveform": piece[None]}, signature=signature).items()}
            for curve, suffix, wanted_here in (("activity", ACTIVITY_SUFFIX, with_activity),
                                               ("pitch", PITCH_SUFFIX, with_pitch)):
                if wanted_here:
                    got = self.predict({"waveform": piece[None]}, signature=curve)
                    out.update({f"{k}{suffix}": v[0] for k, v in got.items()})
            return out

        return separate_in_chunks(wav, one_chunk, chunk_samples=chunk, overlap_samples=overlap_samples,
                                  min_samples=min_samples, sink=sink, progress=progress,
                                  description=f"separating via {self.address}")


def server_chunk_backend(address: str, model: str, *, timeout: float = 60.0, targets: list[str] | None = None,
                         pitch: bool = False) -> tuple[Callable[[np.ndarray], dict], list[str]]:
    """A chunk function for `tfmusic.audio.chunking` that separates each chunk through a server (with
    ``pitch``, IASS+pitch targets' ``<target>_pitch`` curves too: ``tfmusic separate --transcribe``).

    Returns ``(fn, targets kept)``; raises `ServingError` (unknown targets: NOT_FOUND). Chunks may
    exceed the message limit, so `ServingClient.separate` splits each again into requests that fit.
    """
    try:  # ``timeout`` bounds each request, retries after a server restart included
        client = ServingClient(address, model, timeout=timeout, deadline=timeout)
    except ValueError as err:
        raise ServingError("INVALID_ARGUMENT", str(err)) from err
    available = client.targets()
    keep = list(targets or available)
    missing = [t for t in keep if t not in available]
    if missing:
        raise ServingError("NOT_FOUND", f"model {model!r} at {address} has no target(s) {missing}; "
                           f"it has {available}")

    def separate_chunk(piece: np.ndarray) -> dict:
        out = client.separate(piece, activity=True, pitch=pitch)
        return {k: v for k, v in out.items()
                if k in keep or k.removesuffix(ACTIVITY_SUFFIX) in keep or k.removesuffix(PITCH_SUFFIX) in keep}

    return separate_chunk, keep
