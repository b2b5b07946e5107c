"""Server soak: 8 concurrent gRPC/REST clients against ``tfmusic serve`` while a version changes.

Why: TF Serving promises availability during version changes (a new version is loaded before the
old one is unloaded). This holds the embedded server to that under load and hostile input for a
bounded time (default 300 s, ``--seconds``), loopback only: every client loops over a seeded mix
of valid Predicts (gRPC and REST), malformed protobuf bytes, wrong dtypes and shapes, too-short
and oversize inputs, metadata and status calls. A third of the way in, version 2 (the same
architecture with other weights, so it answers differently) is published (copied to a temporary
folder, then renamed into place, as ``tfmusic export`` does); once it serves, version 1 is retired
(its folder removed). Every answer must carry the code its request kind expects (valid ones must
succeed and equal the outputs of the version the response names), both versions must have
answered, and the server's RSS may grow by at most 10% from the first seconds under load to the end.

    python bench/reliability/soak.py --seconds 300 --out bench/reliability/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

if __name__ == "__main__":  # runnable as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

CLIENTS = 8
SAMPLES = 4096  # per valid request: small, so the soak measures the server, not the model
MAX_MESSAGE_MB = 1
# request kind -> (weight, the codes it may end with)
KINDS = {
    "predict": (6, {"OK"}),
    "rest_predict": (2, {"OK"}),
    "metadata": (1, {"OK"}),
    "status": (1, {"OK"}),
    "rest_status": (1, {"OK"}),
    "malformed_bytes": (1, {"INTERNAL"}),  # gRPC Python: "Exception deserializing request!"
    "rest_malformed_json": (1, {"INVALID_ARGUMENT"}),
    "wrong_dtype": (1, {"INVALID_ARGUMENT"}),
    "wrong_shape": (1, {"INVALID_ARGUMENT"}),
    "too_short": (1, {"INVALID_ARGUMENT"}),
    "oversize": (1, {"RESOURCE_EXHAUSTED"}),
}


def build_model(work: Path, seed: int) -> Path:
    """A tiny Open-Unmix separator exported as a SavedModel version under ``work/source-<seed>``."""
    import keras

    from tfmusic.export.saved_model import export_separator
    from tfmusic.models.openunmix import OpenUnmix
    from tfmusic.models.separator import Separator

    keras.utils.set_random_seed(seed)
    # a 512-point STFT (the production 4096 one costs ~100 ms of CPU per request on its own)
    separator = Separator({"vocals": OpenUnmix(nb_channels=2, hidden_size=8, nb_layers=1, max_bin=128, n_fft=512,
                                               hop_length=128, target="vocals")})
    separator(np.zeros((1, 2, SAMPLES), np.float32))
    path, _ = export_separator(separator, work / f"source-{seed}", "separator", 1, example_samples=SAMPLES,
                               overwrite=True)
    return path


def publish(source: Path, model_dir: Path, version: int) -> None:
    """Copy a version folder in under a temporary name, then rename it: the server never sees half of it."""
    tmp = model_dir / f".publish-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    os.replace(tmp, model_dir / str(version))


def reference_outputs(version_dir: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """What a version must answer to ``x``: its SavedModel run in process."""
    import tensorflow as tf

    out = tf.saved_model.load(str(version_dir)).signatures["serving_default"](waveform=tf.constant(x))
    return {k: v.numpy() for k, v in out.items()}


def matching_versions(outputs: dict, expected: dict[int, dict]) -> list[int]:
    """The versions whose reference outputs ``outputs`` equal (same keys, within 1e-4)."""
    return [v for v, want in expected.items()
            if set(want) == set(outputs) and all(np.allclose(outputs[k], want[k], atol=1e-4) for k in want)]


def output_problem(kind: str, version: int | None, outputs: dict | None, expected: dict[int, dict]) -> str | None:
    """Why an answer is wrong, or None: its outputs must be a published version's, and the one it names
    (REST answers name none)."""
    if outputs is None:
        return None
    matches = matching_versions(outputs, expected)
    if not matches:
        return f"{kind}: outputs match no published version (response version {version})"
    if version and version not in matches:
        return f"{kind}: response names version {version} but carries the outputs of version(s) {matches}"
    return None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class Clients:
    """The request mix; each call returns ``(code, seconds, version or None, outputs or None)``."""

    def __init__(self, address: str, rest: str, x: np.ndarray, single_output: str = "vocals") -> None:
        import grpc
        from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                             predict_pb2, prediction_service_pb2_grpc)

        from tfmusic.serving.tensors import to_tensor_proto

        self.grpc, self.rest, self.x, self.single_output = grpc, rest, x, single_output
        limit = 8 * 1024 * 1024  # the client may send more than the server takes (the oversize case)
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", limit),
                                                                ("grpc.max_receive_message_length", limit)])
        self.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.raw_predict = self.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        self.pb = predict_pb2
        self.meta_pb, self.status_pb, self.to_proto = get_model_metadata_pb2, get_model_status_pb2, to_tensor_proto
        self.rest_body = json.dumps({"inputs": {"waveform": x.tolist()}}).encode()

    def close(self) -> None:
        self.channel.close()

    def _predict(self, array: np.ndarray):
        request = self.pb.PredictRequest()
        request.model_spec.name = "separator"
        request.inputs["waveform"].CopyFrom(self.to_proto(array))
        response = self.predict_stub.Predict(request, timeout=60)
        from tfmusic.serving.tensors import from_tensor_proto

        return int(response.model_spec.version.value), {k: from_tensor_proto(v) for k, v in response.outputs.items()}

    def call(self, kind: str):
        """One request of ``kind``; gRPC errors become their code name, HTTP errors the code in the body."""
        start = time.perf_counter()
        version = outputs = None
        try:
            if kind == "predict":
                version, outputs = self._predict(self.x)
            elif kind == "wrong_dtype":
                self._predict(self.x.astype(np.float64))
            elif kind == "wrong_shape":
                self._predict(self.x[0])
            elif kind == "too_short":
                self._predict(self.x[..., :64])
            elif kind == "oversize":
                self._predict(np.zeros((1, 2, (MAX_MESSAGE_MB * 2**20) // 8 + 4096), np.float32))
            elif kind == "malformed_bytes":
                self.raw_predict(b"\x0a\xff\xff\xff\xff\x0f\x12\x01", timeout=60)
            elif kind == "metadata":
                request = self.meta_pb.GetModelMetadataRequest()
                request.model_spec.name = "separator"
                request.metadata_field.append("signature_def")
                self.predict_stub.GetModelMetadata(request, timeout=60)
            elif kind == "status":
                request = self.status_pb.GetModelStatusRequest()
                request.model_spec.name = "separator"
                self.model_stub.GetModelStatus(request, timeout=60)
            elif kind == "rest_status":
                urllib.request.urlopen(f"http://{self.rest}/v1/models/separator", timeout=60).read()
            elif kind == "rest_predict":
                req = urllib.request.Request(f"http://{self.rest}/v1/models/separator:predict", data=self.rest_body)
                doc = json.loads(urllib.request.urlopen(req, timeout=60).read())["outputs"]
                # TF Serving's columnar format: a single output comes back bare, not as a map
                doc = doc if isinstance(doc, dict) else {self.single_output: doc}
                outputs = {k: np.asarray(v, np.float32) for k, v in doc.items()}
            elif kind == "rest_malformed_json":
                req = urllib.request.Request(f"http://{self.rest}/v1/models/separator:predict", data=b"{\"inputs\": [1,")
                urllib.request.urlopen(req, timeout=60).read()
            code = "OK"
        except self.grpc.RpcError as err:
            code = err.code().name
        except urllib.error.HTTPError as err:
            code = f"HTTP_{err.code}"
            try:
                body = json.loads(err.read())
                code = body.get("code", code) if isinstance(body, dict) else code
                if code == f"HTTP_{err.code}" and err.code == 400:
                    code = "INVALID_ARGUMENT"
            except ValueError:
                pass
        except (urllib.error.URLError, OSError) as err:
            code = f"CONNECTION_ERROR({err})"
        return code, time.perf_counter() - start, version, outputs


def soak(seconds: float, work: Path, seed: int = 0, progress: bool = True) -> dict:
    """Run the soak; the figures for the report (raises nothing for failed requests: they are counted)."""
    from tfmusic.serving.server import spawn_server

    work.mkdir(parents=True, exist_ok=True)
    repo = work / "models"
    shutil.rmtree(repo, ignore_errors=True)
    # Version 2 has other weights, so it answers differently: an answer that names one version but
    # carries the other's outputs (a mix-up during the change) counts as a wrong output.
    v1, v2 = build_model(work, 1), build_model(work, 2)
    publish(v1, repo / "separator", 1)
    x = (0.1 * np.random.default_rng(seed).standard_normal((1, 2, SAMPLES))).astype(np.float32)
    expected = {1: reference_outputs(v1, x), 2: reference_outputs(v2, x)}
    if matching_versions(expected[2], {1: expected[1]}):
        raise RuntimeError("versions 1 and 2 answer alike: the soak could not tell them apart")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        rest_port = s.getsockname()[1]
    args = ["--poll-seconds", "0.5", "--max-message-mb", str(MAX_MESSAGE_MB), "--rest-port", str(rest_port)]
    results: list[tuple[str, str, float, int | None]] = []
    wrong_outputs: list[str] = []
    lock = threading.Lock()
    events: list[str] = []
    with spawn_server(repo, extra_args=args, startup_timeout=900) as (address, proc):  # busy machines
        rest = f"127.0.0.1:{rest_port}"
        warm = Clients(address, rest, x)
        for kind in KINDS:  # warm every path before the baseline RSS
            for _ in range(3):
                warm.call(kind)
        warm.close()
        rss_idle = rss_mb(proc.pid)
        stop = threading.Event()
        kinds = list(KINDS)
        weights = np.array([KINDS[k][0] for k in kinds], float)
        weights /= weights.sum()

        def client(index: int) -> None:
            rng = np.random.default_rng(seed * 100 + index)
            clients = Clients(address, rest, x)
            try:
                while not stop.is_set():
                    kind = kinds[rng.choice(len(kinds), p=weights)]
                    code, took, version, outputs = clients.call(kind)
                    bad = output_problem(kind, version, outputs, expected)
                    with lock:
                        results.append((kind, code, took, version))
                        if bad:
                            wrong_outputs.append(bad)
            finally:
                clients.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        began = time.monotonic()
        for t in threads:
            t.start()
        from tfmusic.serving.client import ServingClient

        with ServingClient(address, "separator", timeout=30) as admin:
            # the baseline is taken under full load: 8 busy request threads own memory an idle server does not
            time.sleep(min(0.15 * seconds, 30.0))
            rss_start = rss_mb(proc.pid)
            time.sleep(max(0.0, seconds / 3 - (time.monotonic() - began)))
            publish(v2, repo / "separator", 2)
            events.append(f"{time.monotonic() - began:.1f} s: version 2 published")
            while not any(v == 2 and s == "AVAILABLE" for v, s, _ in admin.status()):
                time.sleep(0.1)
            events.append(f"{time.monotonic() - began:.1f} s: version 2 AVAILABLE")
            shutil.rmtree(repo / "separator" / "1")
            events.append(f"{time.monotonic() - began:.1f} s: version 1 folder removed (retired)")
            while any(v == 1 and s == "AVAILABLE" for v, s, _ in admin.status()):
                time.sleep(0.1)
            events.append(f"{time.monotonic() - began:.1f} s: version 1 unloaded (END)")
            remaining = seconds - (time.monotonic() - began)
            if remaining > 0:
                time.sleep(remaining)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        elapsed = time.monotonic() - began
        rss_end = rss_mb(proc.pid)
    report = summarize(results, wrong_outputs, events, elapsed, rss_start, rss_end)
    report["rss_idle_mb"] = round(rss_idle, 1)
    return report


def summarize(results, wrong_outputs, events, elapsed, rss_start, rss_end) -> dict:
    by_kind: dict[str, Counter] = {k: Counter() for k in KINDS}
    unexpected: Counter = Counter()
    for kind, code, _, _ in results:
        by_kind[kind][code] += 1
        if code not in KINDS[kind][1]:
            unexpected[f"{kind}:{code}"] += 1
    latencies = [took for kind, code, took, _ in results if kind == "predict" and code == "OK"]
    versions = Counter(v for kind, code, _, v in results if kind == "predict" and code == "OK")
    return {
        "seconds": round(elapsed, 1), "requests": len(results),
        "by_kind": {k: dict(c) for k, c in by_kind.items()},
        "codes": dict(Counter(code for _, code, _, _ in results)),
        "unexpected": dict(unexpected), "wrong_outputs": wrong_outputs[:10], "wrong_output_count": len(wrong_outputs),
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2) if latencies else None,
        "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2) if latencies else None,
        "served_by_version": {str(k): v for k, v in sorted(versions.items())},
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
        "rss_growth": round(rss_end / rss_start - 1.0, 4), "events": events,
    }


def failures(report: dict) -> list[str]:
    """What makes the soak fail: unexpected codes, wrong outputs, a kind never sent, RSS growth > 10%."""
    problems = [f"unexpected {k} x{n}" for k, n in report["unexpected"].items()]
    problems += report["wrong_outputs"]
    problems += [f"no {k} request was sent" for k, c in report["by_kind"].items() if not c]
    if report["rss_growth"] > 0.10:
        problems.append(f"server RSS grew {100 * report['rss_growth']:.1f}% (> 10%)")
    if set(report["served_by_version"]) != {"1", "2"}:
        problems.append(f"valid requests were not served by both versions: {report['served_by_version']}")
    return problems


def markdown(report: dict, load_start: str, load_end: str) -> str:
    """The soak's table; the machine's load at both ends is part of every latency figure."""
    lines = [f"## Server soak ({report['seconds']} s, {CLIENTS} clients, loopback)", "",
             f"Machine: 2 cores; `uptime` at the start (model export and server start included): {load_start};",
             f"at the end: {load_end}", "",
             f"Requests served: **{report['requests']}**; valid Predicts by version: {report['served_by_version']}; "
             f"p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms (gRPC Predict, {SAMPLES} stereo samples).", "",
             f"Server RSS: {report['rss_idle_mb']} MiB idle after warm-up; {report['rss_start_mb']} MiB under load "
             f"after the first {min(0.15 * report['seconds'], 30):.0f} s -> {report['rss_end_mb']} MiB at the end "
             f"({100 * report['rss_growth']:+.1f}%, limit +10%).", "",
             "| request kind | expected code | answers by code |", "|---|---|---|"]
    for kind, (_, codes) in KINDS.items():
        got = ", ".join(f"{c} {n}" for c, n in sorted(report["by_kind"][kind].items()))
        lines.append(f"| {kind} | {', '.join(sorted(codes))} | {got} |")
    lines += ["", f"Unexpected codes: {report['unexpected'] or 'none'}; outputs matching no version: "
              f"{report['wrong_output_count']}.", "", "Version change: " + "; ".join(report["events"]) + "."]
    return "\n".join(lines) + "\n"


def fault_table(path: Path) -> str:
    """The kill / client-fault / fuzz records the tests append under ``make reliability`` as a table."""
    rows: dict[str, list] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        record = json.loads(line)
        entry = rows.setdefault(record["scenario"], [[], 0, None])
        entry[0].append(record["fault"])
        entry[1] += bool(record["survived"])
        entry[2] = record["data_lost"]  # one figure per scenario run, repeated on each of its faults
    lines = ["## Faults injected (kill, client and fuzz tests)", "",
             "Survived: the test saw the system get past the fault. Data lost: outputs missing or not equal to "
             "an undisturbed run's, as the test measured them.", "",
             "| scenario | faults injected | survived | data lost |", "|---|---|---|---|"]
    for scenario, (faults, survived, lost) in rows.items():
        lost_text = "not measured (the test failed first)" if lost is None else lost
        lines.append(f"| {scenario} | {len(faults)}: {', '.join(faults)} | {survived} of {len(faults)} | {lost_text} |")
    if not rows:
        lines.append("| (no records: run the tests with TFMUSIC_RELIABILITY_LOG set) | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the clients run (default 300)")
    parser.add_argument("--work", default="/tmp/tfmusic-soak", help="scratch folder (model repository)")
    parser.add_argument("--out", help="write the Markdown table here (e.g. bench/reliability/RESULTS.md)")
    parser.add_argument("--faults", help="JSON lines of the fault tests (TFMUSIC_RELIABILITY_LOG) to tabulate too")
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error("--seconds must be > 0")
    load_start = os.popen("uptime").read().strip()
    report = soak(args.seconds, Path(args.work))
    load_end = os.popen("uptime").read().strip()
    print(json.dumps(report, indent=1))
    if args.out:
        text = "# Reliability results (`make reliability`)\n\n" + markdown(report, load_start, load_end)
        if args.faults:
            text += "\n" + fault_table(Path(args.faults))
        Path(args.out).write_text(text)
    problems = failures(report)
    for problem in problems:
        print("FAIL:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
