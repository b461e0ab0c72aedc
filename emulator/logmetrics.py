"""The emulated Cloud Logging `MetricsServiceV2`: log-based metrics that can be read, created and updated.

Owns `LogMetric`s by `projects/P/metrics/NAME`: Get (`NOT_FOUND` when absent), Create (`ALREADY_EXISTS`
when taken; a filter is required), Update (creates when absent, as the API does) and List, with the
server-filled fields (create and update times, a DELTA INT64 descriptor with unit "1"). What a metric
counts is not evaluated here: points for it are added through `MetricStore.add_point` under
`logging.googleapis.com/user/NAME`, as Cloud Monitoring would show them.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
from google.api import metric_pb2
from google.cloud import logging_v2

from emulator.rules import ApiError
from emulator.store import utc_now

__all__ = ["LogMetricStore"]


class LogMetricStore:
    """Log-based metrics by full name; thread-safe."""

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._metrics: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        with self._lock:
            if name not in self._metrics:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"Metric {name} does not exist")
            return copy.deepcopy(self._metrics[name])

    def list(self, parent: str) -> Any:
        with self._lock:
            found = [
                copy.deepcopy(m)
                for n, m in sorted(self._metrics.items())
                if n.startswith(f"{parent}/metrics/")
            ]
        return logging_v2.types.ListLogMetricsResponse.pb()(metrics=found)

    def create(self, parent: str, metric: Any) -> Any:
        name = f"{parent}/metrics/{metric.name}"
        with self._lock:
            if name in self._metrics:
                raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"Metric {metric.name} already exists")
            return self._store(name, metric, created=True)

    def update(self, metric_name: str, metric: Any) -> Any:
        with self._lock:
            return self._store(metric_name, metric, created=metric_name not in self._metrics)

    def _store(self, name: str, metric: Any, *, created: bool) -> Any:
        if not metric.filter.strip():
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "A log-based metric needs a filter",
                [("metric.filter", "must not be empty")],
            )
        stored = copy.deepcopy(metric)
        stored.name = name.rsplit("/", 1)[-1]
        now = self._clock()
        if created:
            stored.create_time.FromDatetime(now)
        else:
            stored.create_time.CopyFrom(self._metrics[name].create_time)
        stored.update_time.FromDatetime(now)
        descriptor = stored.metric_descriptor
        descriptor.type = f"logging.googleapis.com/user/{stored.name}"
        descriptor.metric_kind = descriptor.metric_kind or metric_pb2.MetricDescriptor.DELTA
        descriptor.value_type = descriptor.value_type or metric_pb2.MetricDescriptor.INT64
        descriptor.unit = descriptor.unit or "1"
        self._metrics[name] = stored
        return copy.deepcopy(stored)
