"""Serving benchmark: embedded gRPC server under load, its overhead, and ONNX Runtime vs TF SavedModel.

Model: the project's Separator (STFT as a DFT basis) with one small Open-Unmix target, exported
with a fixed 1 s (44,032-sample) stereo signature. Steps, all on loopback on this machine:

1. in-process reference: ``tf.saved_model.load(...).signatures["serving_default"]`` per request;
2. ``tfmusic serve`` in a child process (batching on): one client's sequential requests (the server's
   overhead over in-process calls), then N concurrent gRPC clients sending a bounded number of
   Predict requests: p50/p99 latency, throughput, error count (must be 0), server peak RSS;
3. ONNX Runtime (``OnnxSeparator``) vs the SavedModel on the same input: CPU time per separation;
4. the same load against a second ``tfmusic serve`` without batching: throughput with batching on vs off.

Rows follow bench/run_all.py (ratio > 1 means ours is better).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
from timing import load_average, load_note

SAMPLES = 43 * 1024  # ~1 s at 44.1 kHz, whole hops
CLIENTS = 4
REQUESTS_PER_CLIENT = 8
REPEATS = 8


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _build_model(repo: Path) -> Path:
    import keras

    from tfmusic.export.saved_model import export_separator
    from tfmusic.models.openunmix import OpenUnmix
    from tfmusic.models.separator import Separator

    keras.utils.set_random_seed(0)
    separator = Separator({"vocals": OpenUnmix(nb_channels=2, hidden_size=64, nb_layers=2, target="vocals")})
    separator(np.zeros((1, 2, SAMPLES), np.float32))
    path, _ = export_separator(separator, repo, "separator", 1, samples=SAMPLES, overwrite=True)
    return path


def _time_calls(fn, x, repeats: int) -> tuple[list[float], float]:
    fn(x)  # warm
    walls = []
    cpu0 = time.process_time()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        walls.append(time.perf_counter() - t0)
    return walls, (time.process_time() - cpu0) / repeats


def interleaved_walls(sides: dict, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """All wall times per side, repetitions interleaved after one warm-up call each, and the load seen."""
    for fn in sides.values():
        fn()
    walls: dict[str, list[float]] = {k: [] for k in sides}
    loads: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            loads[name].append(load_average())
            t0 = time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - t0)
    return walls, loads


def _load(address: str, x: np.ndarray) -> tuple[list[float], list[str], float]:
    """CLIENTS threads sending REQUESTS_PER_CLIENT Predicts each: (latencies, errors, wall seconds)."""
    from tfmusic.serving.client import ServingClient

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client_loop() -> None:
        with ServingClient(address, "separator", timeout=120) as client:
            for _ in range(REQUESTS_PER_CLIENT):
                t0 = time.perf_counter()
                try:
                    client.predict({"waveform": x})
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                except Exception as err:  # noqa: BLE001 - every failure is an error, not only ServingError
                    with lock:
                        errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - start


def run(out_dir: Path) -> list[dict]:
    import tensorflow as tf

    from tfmusic.export.onnx import OnnxSeparator, export_onnx
    from tfmusic.serving.client import ServingClient
    from tfmusic.serving.server import spawn_server

    work = Path(out_dir) / "serving_bench"
    repo = work / "models"
    path = _build_model(repo)
    onnx_path = work / "separator.onnx"
    (export,) = export_onnx(path, onnx_path)
    x = (0.1 * np.random.default_rng(0).standard_normal((1, 2, SAMPLES))).astype(np.float32)

    # 1. in-process SavedModel
    sig = tf.saved_model.load(str(path)).signatures["serving_default"]
    tf_walls, tf_cpu = _time_calls(lambda a: sig(waveform=tf.constant(a))["vocals"].numpy(), x, REPEATS)

    # 3. ONNX Runtime, same input
    onnx_sep = OnnxSeparator(onnx_path)
    ort_walls, ort_cpu = _time_calls(onnx_sep, x, REPEATS)
    diff = float(np.max(np.abs(onnx_sep(x)["vocals"] - sig(waveform=tf.constant(x))["vocals"].numpy())))

    # 2. the embedded server under load
    batching = work / "batching.config"
    batching.write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 2000 }\n"
                        "num_batch_threads { value: 2 }\n")
    with spawn_server(repo, extra_args=["--batching-config", str(batching), "--poll-seconds", "0"]) as (address, proc):
        with ServingClient(address, "separator", timeout=120) as single:
            # the overhead pair, interleaved in one loop (in-process, gRPC, in-process, ...) with the load recorded
            walls, loads = interleaved_walls({"in-process": lambda: sig(waveform=tf.constant(x))["vocals"].numpy(),
                                              "grpc": lambda: single.predict({"waveform": x})}, REPEATS)
            single_walls, tf_walls_paired = walls["grpc"], walls["in-process"]
        latencies, errors, elapsed = _load(address, x)
        rss = _peak_rss_mb(proc.pid)
    # 4. batching off: same clients, same requests
    with spawn_server(repo, extra_args=["--poll-seconds", "0"]) as (address, _):
        latencies_off, errors_off, elapsed_off = _load(address, x)
    errors += errors_off
    total = CLIENTS * REQUESTS_PER_CLIENT
    if latencies:
        p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    else:
        p50 = p99 = float("nan")
    completed = len(latencies) + len(latencies_off)
    ref_p50 = statistics.median(tf_walls)
    paired_ref_p50 = statistics.median(tf_walls_paired)
    throughput = len(latencies) / elapsed
    throughput_off = len(latencies_off) / elapsed_off
    ref_throughput = 1.0 / ref_p50
    machine = f"{os.cpu_count()} cores, shared; 1 s stereo per request; {CLIENTS} clients x {REQUESTS_PER_CLIENT}"
    single_p50 = statistics.median(single_walls)
    return [
        {"what": "serving: one client, gRPC Predict vs in-process SavedModel (server overhead)",
         "ours": single_p50 * 1e3, "reference": paired_ref_p50 * 1e3, "unit": "ms p50",
         "ratio": paired_ref_p50 / single_p50, "target": ">= 0.91 (<= 10% overhead)",
         "met": paired_ref_p50 / single_p50 >= 1 / 1.1,
         "notes": f"sequential requests, the two sides interleaved while the server runs; overhead "
                  f"{1e3 * (single_p50 - paired_ref_p50):.0f} ms per 1 s stereo request; {load_note(loads)}"},
        {"what": "serving: gRPC Predict p50 latency vs in-process SavedModel", "ours": p50 * 1e3,
         "reference": ref_p50 * 1e3, "unit": "ms", "ratio": ref_p50 / p50, "target": ">= 0.25 (overhead incl. queueing)",
         "met": ref_p50 / p50 >= 0.25, "notes": f"{machine}; p50 includes waiting behind {CLIENTS - 1} other clients"},
        {"what": "serving: gRPC Predict p99 latency", "ours": p99 * 1e3, "reference": _percentile(tf_walls, 99) * 1e3,
         "unit": "ms", "ratio": _percentile(tf_walls, 99) / p99, "target": None, "met": None,
         "notes": "reference = in-process p99 of sequential calls"},
        {"what": "serving: throughput under load vs in-process sequential", "ours": throughput,
         "reference": ref_throughput, "unit": "req/s", "ratio": throughput / ref_throughput, "target": ">= 0.7",
         "met": throughput / ref_throughput >= 0.7, "notes": f"batching max 4 / 2 ms; {total} requests"},
        {"what": "serving: server throughput with batching on vs off", "ours": throughput,
         "reference": throughput_off, "unit": "req/s", "ratio": throughput / throughput_off if throughput_off else None,
         "target": None, "met": None,
         "notes": f"same {total} requests from {CLIENTS} clients; on = max_batch_size 4, 2 ms timeout, 2 threads; "
                  f"off = no --batching-config"},
        {"what": "serving: request errors under load", "ours": len(errors), "reference": 0, "unit": "errors",
         "ratio": None, "target": "== 0, all requests completed", "met": not errors and completed == 2 * total,
         "notes": (f"{completed}/{2 * total} completed; " + (errors[0][:120] if errors else "no exception of any kind")
                   + " (batching on and off)")},
        {"what": "serving: server peak RSS", "ours": rss, "reference": None, "unit": "MiB", "ratio": None,
         "target": None, "met": None, "notes": "VmHWM of the `tfmusic serve` process after the load test"},
        {"what": "ONNX Runtime vs TF SavedModel CPU time, 1 s stereo separation", "ours": ort_cpu * 1e3,
         "reference": tf_cpu * 1e3, "unit": "ms CPU", "ratio": tf_cpu / ort_cpu, "target": ">= 1 (ONNX as fast)",
         "met": tf_cpu / ort_cpu >= 1.0,
         "notes": f"wall p50 {statistics.median(ort_walls) * 1e3:.0f} vs {ref_p50 * 1e3:.0f} ms; "
                  f"max |diff| {diff:.1e}; export parity {export.max_rel_diff:.1e}"},
    ]


if __name__ == "__main__":
    import json
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(out), indent=2, default=str))
