"""The emulated Cloud Monitoring `MetricService.ListTimeSeries`: stored points, filtered and aggregated.

Owns the part of the Monitoring API the controller reads: a filter of `metric.type`, `resource.type`,
`resource.labels.K` and `metric.labels.K` clauses joined by `AND`, each `= "value"` or `= one_of("a", "b")`;
an interval (points whose end lies in (start, end]); alignment into windows ending at the interval's end
with `ALIGN_DELTA`, `ALIGN_SUM` or `ALIGN_RATE`; `REDUCE_SUM` or `REDUCE_NONE` across series with
`group_by_fields`; paging by series. Points are DELTA counts (INT64), as for Cloud Run's `request_count`
and log-based metrics. Anything else is `INVALID_ARGUMENT`, so a filter the emulator does not understand is
never silently answered.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
from google.api import metric_pb2
from google.cloud import monitoring_v3

from emulator.rules import ApiError

__all__ = ["MetricStore"]

_Aligner = monitoring_v3.Aggregation.Aligner
_Reducer = monitoring_v3.Aggregation.Reducer
_CLAUSE = re.compile(
    r"\s*(metric\.type|resource\.type|(?:resource|metric)\.labels?\.[A-Za-z0-9_]+)\s*=\s*"
    r'(?:"([^"]*)"|one_of\(\s*((?:"[^"]*"\s*,?\s*)+)\))\s*'
)
_MAX_PAGE = 100_000


@dataclass
class _Series:
    metric_type: str
    metric_labels: dict[str, str]
    resource_type: str
    resource_labels: dict[str, str]
    points: list[tuple[float, int]] = field(default_factory=list)  # (end time in seconds, value)

    def field_value(self, name: str) -> str | None:
        if name == "metric.type":
            return self.metric_type
        if name == "resource.type":
            return self.resource_type
        scope, _, label = name.partition(".labels.") if ".labels." in name else name.partition(".label.")
        labels = self.metric_labels if scope == "metric" else self.resource_labels
        return labels.get(label)


class MetricStore:
    """Time series by identity; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[Any, ...], _Series] = {}

    def add_point(
        self,
        metric_type: str,
        value: int,
        end: datetime,
        *,
        resource_labels: dict[str, str],
        metric_labels: dict[str, str] | None = None,
        resource_type: str = "cloud_run_revision",
    ) -> None:
        """Record a DELTA count ending at `end` (e.g. 5xx requests of one revision in the last minute)."""
        labels = metric_labels or {}
        key = (
            metric_type,
            tuple(sorted(labels.items())),
            resource_type,
            tuple(sorted(resource_labels.items())),
        )
        with self._lock:
            series = self._series.setdefault(
                key, _Series(metric_type, dict(labels), resource_type, dict(resource_labels))
            )
            series.points.append((end.timestamp(), value))

    def list_time_series(self, request: Any) -> Any:
        clauses = _parse_filter(request.filter)
        start, end = (
            request.interval.start_time.ToDatetime().timestamp(),
            request.interval.end_time.ToDatetime().timestamp(),
        )
        if end <= 0:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "interval.end_time is required")
        with self._lock:
            matching = [s for s in self._series.values() if all(s.field_value(n) in v for n, v in clauses)]
            selected = [(s, [(t, v) for t, v in s.points if start < t <= end]) for s in matching]
        selected = [(s, points) for s, points in selected if points]
        series = (
            _aggregate(selected, request.aggregation, end)
            if request.aggregation.alignment_period.seconds
            else [_raw(s, points) for s, points in selected]
        )
        size = min(request.page_size or _MAX_PAGE, _MAX_PAGE)
        offset = int(request.page_token or 0)
        page = series[offset : offset + size]
        token = str(offset + size) if offset + size < len(series) else ""
        return monitoring_v3.ListTimeSeriesResponse.pb()(time_series=page, next_page_token=token)


def _parse_filter(text: str) -> list[tuple[str, set[str]]]:
    clauses = []
    for part in re.split(r"\s+AND\s+", text.strip()) if text.strip() else []:
        match = _CLAUSE.fullmatch(part)
        if match is None:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"filter clause not understood: {part!r}")
        values = {match[2]} if match[2] is not None else set(re.findall(r'"([^"]*)"', match[3]))
        clauses.append((match[1].replace(".label.", ".labels."), values))
    if not any(name == "metric.type" for name, _ in clauses):
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "the filter must name a metric.type")
    return clauses


def _raw(series: _Series, points: list[tuple[float, int]]) -> Any:
    return _time_series(
        series.metric_type,
        series.metric_labels,
        series.resource_type,
        series.resource_labels,
        [(t, value, False) for t, value in sorted(points, reverse=True)],
    )


def _aggregate(
    selected: list[tuple[_Series, list[tuple[float, int]]]], aggregation: Any, end: float
) -> list[Any]:
    period = aggregation.alignment_period.seconds
    aligner = aggregation.per_series_aligner
    if aligner not in (_Aligner.ALIGN_DELTA, _Aligner.ALIGN_SUM, _Aligner.ALIGN_RATE):
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "per_series_aligner must be ALIGN_DELTA, ALIGN_SUM or ALIGN_RATE",
        )
    reducer = aggregation.cross_series_reducer
    if reducer not in (_Reducer.REDUCE_NONE, _Reducer.REDUCE_SUM):
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT, "cross_series_reducer must be REDUCE_NONE or REDUCE_SUM"
        )
    groups: dict[tuple[Any, ...], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    shapes: dict[tuple[Any, ...], _Series] = {}
    for series, points in selected:
        key = _group_key(series, list(aggregation.group_by_fields), reducer)
        shapes.setdefault(key, _grouped(series, list(aggregation.group_by_fields), reducer))
        for t, value in points:
            window_end = end - ((end - t) // period) * period  # windows (end - k·P - P, end - k·P]
            groups[key][window_end] += value
    rate = aligner == _Aligner.ALIGN_RATE
    result = []
    for key, windows in sorted(groups.items(), key=lambda item: repr(item[0])):
        shape = shapes[key]
        aligned = [
            (t, total / period if rate else total, rate) for t, total in sorted(windows.items(), reverse=True)
        ]
        result.append(
            _time_series(
                shape.metric_type,
                shape.metric_labels,
                shape.resource_type,
                shape.resource_labels,
                aligned,
                period,
            )
        )
    return result


def _group_key(series: _Series, fields: list[str], reducer: Any) -> tuple[Any, ...]:
    if reducer == _Reducer.REDUCE_NONE:
        return (
            series.metric_type,
            tuple(sorted(series.metric_labels.items())),
            series.resource_type,
            tuple(sorted(series.resource_labels.items())),
        )
    return tuple(series.field_value(name) for name in fields)


def _grouped(series: _Series, fields: list[str], reducer: Any) -> _Series:
    """The labels a reduced series keeps: only the grouped ones, as Cloud Monitoring returns them."""
    if reducer == _Reducer.REDUCE_NONE:
        return series
    keep = {name: series.field_value(name) or "" for name in fields}
    metric = {n.split(".")[-1]: v for n, v in keep.items() if n.startswith("metric.label")}
    resource = {n.split(".")[-1]: v for n, v in keep.items() if n.startswith("resource.label")}
    return _Series(series.metric_type, metric, series.resource_type, resource)


def _time_series(
    metric_type: str,
    metric_labels: dict[str, str],
    resource_type: str,
    resource_labels: dict[str, str],
    points: list[tuple[float, float, bool]],
    period: int = 0,
) -> Any:
    pb = monitoring_v3.TimeSeries.pb()()
    pb.metric.type = metric_type
    pb.metric.labels.update(metric_labels)
    pb.resource.type = resource_type
    pb.resource.labels.update(resource_labels)
    rate = bool(points) and points[0][2]
    pb.metric_kind = metric_pb2.MetricDescriptor.GAUGE if rate else metric_pb2.MetricDescriptor.DELTA
    pb.value_type = metric_pb2.MetricDescriptor.DOUBLE if rate else metric_pb2.MetricDescriptor.INT64
    for end, value, is_rate in points:
        point = pb.points.add()
        point.interval.end_time.FromNanoseconds(int(end * 1e9))
        if period:
            point.interval.start_time.FromNanoseconds(int((end - period) * 1e9))
        if is_rate:
            point.value.double_value = float(value)
        else:
            point.value.int64_value = int(value)
    return pb
