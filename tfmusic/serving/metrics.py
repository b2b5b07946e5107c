"""Prometheus metrics under TF Serving's names, so dashboards built for TF Serving read the embedded server.

Names, labels, units and buckets follow TF Serving: ``servables/tensorflow/util.cc``
(``/tensorflow/serving/request_count`` by model_name and status, ``request_latency`` in
microseconds by model_name, API and entrypoint, recorded for successful requests only) and
``batching/batching_session.cc`` / ``batching_util.h`` (wrapped run count, input and processed batch
sizes). ``util/prometheus_exporter.cc`` turns ``/`` into ``:`` and writes histograms as cumulative
``_bucket{le=...}`` lines ending in ``+Inf``, then ``_sum`` and ``_count``.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict


def exponential_buckets(scale: float, growth: float, count: int) -> list[float]:
    """TF's ``Buckets::Exponential``: upper limits ``scale * growth**i``; the last bucket is open."""
    return [scale * growth ** i for i in range(count - 1)]


def prometheus_name(name: str) -> str:
    """``/tensorflow/serving/request_count`` -> ``:tensorflow:serving:request_count``."""
    return "".join(c if c.isalnum() or c == "_" else ":" for c in name)


def _labels(names: tuple[str, ...], values: tuple) -> str:
    return ",".join(f'{n}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for n, v in zip(names, values))


class Counter:
    def __init__(self, name: str, *labels: str) -> None:
        self.name, self.labels = name, labels
        self._cells: dict[tuple, int] = defaultdict(int)

    def increment(self, *values, by: int = 1) -> None:
        self._cells[values] += by

    def value(self, *values) -> int:
        return self._cells.get(values, 0)

    def render(self) -> list[str]:
        name = prometheus_name(self.name)
        return [f"# TYPE {name} counter"] + [f"{name}{{{_labels(self.labels, k)}}} {v}"
                                             for k, v in sorted(self._cells.items())]


class Histogram:
    def __init__(self, name: str, limits: list[float], *labels: str) -> None:
        self.name, self.limits, self.labels = name, limits, labels
        self._cells: dict[tuple, list] = {}

    def add(self, value: float, *values) -> None:
        cell = self._cells.setdefault(values, [[0] * (len(self.limits) + 1), 0.0])
        cell[0][bisect.bisect_right(self.limits, value)] += 1
        cell[1] += value

    def render(self) -> list[str]:
        name = prometheus_name(self.name)
        lines = [f"# TYPE {name} histogram"]
        for key, (counts, total) in sorted(self._cells.items()):
            lab = _labels(self.labels, key)
            prefix = f"{name}_bucket{{{lab}{',' if lab else ''}"
            cumulative = 0
            for i, n in enumerate(counts):
                cumulative += n
                le = f"{self.limits[i]:g}" if i < len(self.limits) else "+Inf"
                lines.append(f'{prefix}le="{le}"}} {cumulative}')
            lines.append(f"{name}_sum{{{lab}}} {float(total)!r}")
            lines.append(f"{name}_count{{{lab}}} {cumulative}")
        return lines


class ServingMetrics:
    """The metrics the embedded server keeps, thread-safe, rendered as TF Serving's Prometheus page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.request_count = Counter("/tensorflow/serving/request_count", "model_name", "status")
        self.request_latency = Histogram("/tensorflow/serving/request_latency", exponential_buckets(10, 1.8, 33),
                                         "model_name", "API", "entrypoint")
        self.wrapped_run_count = Counter("/tensorflow/serving/batching_session/wrapped_run_count")
        self.input_batch_size = Histogram("/tensorflow/serving/batching_session/input_batch_size",
                                          exponential_buckets(1, 2, 15))
        self.processed_batch_size = Histogram("/tensorflow/serving/batching_session/processed_batch_size",
                                              exponential_buckets(1, 2, 15))

    def record_request(self, model: str, api: str, entrypoint: str, code: str, micros: float) -> None:
        with self._lock:
            self.request_count.increment(model, code)
            if code == "OK":
                self.request_latency.add(micros, model, api, entrypoint)

    def record_batch(self, input_sizes: list[int], processed_size: int) -> None:
        with self._lock:
            self.wrapped_run_count.increment()
            for n in input_sizes:
                self.input_batch_size.add(n)
            self.processed_batch_size.add(processed_size)

    def prometheus(self) -> str:
        with self._lock:
            metrics = [self.request_count, self.request_latency, self.wrapped_run_count,
                       self.input_batch_size, self.processed_batch_size]
            return "\n".join(line for m in metrics for line in m.render()) + "\n"
