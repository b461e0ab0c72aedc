"""The adapter over Cloud Monitoring and Cloud Logging metrics: the fleet's error signals, read in bulk.

Owns building the real `MetricServiceClient` and `MetricsServiceV2Client` (plaintext to
`CLOUD_RUN_EMULATOR_HOST` when set, Application Default Credentials otherwise), the queries, and turning
time series into `controller.escalation.Window`s per service (the sums themselves: `controller.series`).
For a project, one `ListTimeSeries` reads `run.googleapis.com/request_count` for every service at once
(summed by service, location, revision and response code class over aligned windows), and one more reads
each log-based signal metric (summed by service and location): the number of calls grows with the
signals, not with the fleet.

Log-based metrics are checked once through the Logging API; with `manage_log_metrics`, a missing one is
created with a filter that counts the SQLite error texts, otherwise it is reported missing and not judged.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry
from google.cloud import monitoring_v3
from google.cloud.logging_v2.services.metrics_service_v2 import MetricsServiceV2Client
from google.cloud.logging_v2.services.metrics_service_v2.transports import MetricsServiceV2GrpcTransport
from google.cloud.logging_v2.types import LogMetric
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport

from controller.cloudrun import EMULATOR_HOST_ENV, CallObserver
from controller.errors import PermanentError, TransientError
from controller.escalation import Window
from controller.series import Points, Where, log_counts, request_sums, windows_of
from desired import DesiredState, ServiceKey, ServiceSpec
from desired.redaction import redact_text

__all__ = [
    "CONTENTION_TEXTS",
    "LOG_METRIC_GROUP_BY",
    "REQUEST_COUNT",
    "REQUEST_GROUP_BY",
    "STORAGE_TEXTS",
    "FleetSignals",
    "SignalReader",
    "log_metric_filter",
    "series_request",
    "signal_clients",
]

REQUEST_COUNT = "run.googleapis.com/request_count"
# A pass must not wait out the library's default of a minute or more per call on a Monitoring outage:
# a few quick retries of a transient code, then the project's signals are unreadable for this pass.
RETRY_BUDGET = 10.0
_TIMEOUT = 20.0


def _retry(budget: float) -> retry.Retry:
    return retry.Retry(
        predicate=retry.if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded),
        initial=min(0.2, budget / 4),
        maximum=2.0,
        multiplier=2.0,
        timeout=budget,
    )


LOG_METRIC_PREFIX = "logging.googleapis.com/user/"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# How each query sums its series: requests by revision and response class, log-based metrics by service.
REQUEST_GROUP_BY = (
    "resource.labels.service_name",
    "resource.labels.location",
    "resource.labels.revision_name",
    "metric.labels.response_code_class",
)
LOG_METRIC_GROUP_BY = ("resource.labels.service_name", "resource.labels.location")
CONTENTION_TEXTS = ("database is locked", "database table is locked")
STORAGE_TEXTS = ("disk I/O error", "database disk image is malformed", "OutOfOrderError")


def log_metric_filter(texts: Iterable[str]) -> str:
    """A Logging query counting Cloud Run log entries that contain any of `texts`, in any field."""
    terms = " OR ".join(f'"{text}"' for text in texts)
    return f'resource.type="cloud_run_revision" AND ({terms})'


def signal_clients(
    emulator_host: str | None = None,
) -> tuple[monitoring_v3.MetricServiceClient, MetricsServiceV2Client]:
    """The real clients: to the emulator over plaintext when a host is given or set, else to Google."""
    host = emulator_host if emulator_host is not None else os.environ.get(EMULATOR_HOST_ENV, "")
    if host:
        return (
            monitoring_v3.MetricServiceClient(
                transport=MetricServiceGrpcTransport(channel=grpc.insecure_channel(host))
            ),
            MetricsServiceV2Client(
                transport=MetricsServiceV2GrpcTransport(channel=grpc.insecure_channel(host))
            ),
        )
    return monitoring_v3.MetricServiceClient(), MetricsServiceV2Client()


def series_request(
    project: str, metric: str, period: int, count: int, end: datetime, group_by: Sequence[str]
) -> monitoring_v3.ListTimeSeriesRequest:
    """The one query of `metric` for a whole project: `count` aligned windows of `period` s up to `end`,
    summed by `group_by`."""
    return monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{project}",
        filter=f'metric.type = "{metric}" AND resource.type = "cloud_run_revision"',
        interval=monitoring_v3.TimeInterval(start_time=end - timedelta(seconds=period * count), end_time=end),
        aggregation=monitoring_v3.Aggregation(
            alignment_period={"seconds": period},
            per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
            cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
            group_by_fields=list(group_by),
        ),
        view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
    )


@dataclass
class FleetSignals:
    """What one read found: windows per service (oldest first), missing metrics, and errors by project."""

    windows: dict[ServiceKey, list[Window]] = field(default_factory=dict)
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)  # project → missing metric types
    errors: dict[str, str] = field(default_factory=dict)  # project → why its signals could not be read
    created: list[str] = field(default_factory=list)  # log-based metrics created in this read


class SignalReader:
    """Reads the signals of every service that declares an escalation."""

    def __init__(
        self,
        metrics: monitoring_v3.MetricServiceClient,
        log_metrics: MetricsServiceV2Client | None = None,
        *,
        manage_log_metrics: bool = False,
        on_call: CallObserver | None = None,
        retry_budget: float = RETRY_BUDGET,
    ) -> None:
        self._metrics = metrics
        self._retry = _retry(retry_budget)  # seconds one call may spend retrying a transient code
        self._log_metrics = log_metrics
        self._manage = manage_log_metrics
        self._on_call = on_call
        self._known: set[tuple[str, str]] = set()  # (project, metric name) known to exist

    def close(self) -> None:
        self._metrics.transport.close()  # type: ignore[no-untyped-call]
        if self._log_metrics is not None:
            self._log_metrics.transport.close()  # type: ignore[no-untyped-call]

    @contextmanager
    def _call(self, method: str) -> Iterator[None]:
        try:
            yield
        except gexc.GoogleAPICallError as error:
            if self._on_call is not None:
                code = error.grpc_status_code.name if error.grpc_status_code is not None else str(error.code)
                self._on_call(method, code)
            raise
        if self._on_call is not None:
            self._on_call(method, "OK")

    def read(self, desired: DesiredState, end: datetime, *, create: bool = True) -> FleetSignals:
        """The windows ending at `end` (which should lie a few minutes in the past: Monitoring ingests late)
        of every service with an `escalation`."""
        found = FleetSignals()
        # One read per project and window length: services judged on 60 s windows are read on 60 s
        # windows, whatever others in their project declare. The calls grow with the distinct lengths.
        groups: dict[tuple[str, int], list[ServiceSpec]] = defaultdict(list)
        for spec in desired.services:
            if spec.escalation is not None:
                groups[(spec.key.project, spec.escalation.window)].append(spec)
        outage = ""  # an API that is down for one project is down for all: not waited on again this read
        for (project, _), specs in groups.items():
            if project in found.errors:
                continue
            if outage:
                found.errors[project] = f"{outage} (not asked again in this pass)"
                continue
            try:
                self._read_project(project, specs, end, found, create=create)  # a dry run creates none
            except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError) as error:
                outage = found.errors[project] = redact_text(f"{type(error).__name__}: {error}")
            except gexc.GoogleAPICallError as error:
                found.errors[project] = redact_text(
                    f"{error.grpc_status_code or error.code}: {error.message}"
                )
            except gexc.GoogleAPIError as error:
                found.errors[project] = redact_text(f"{type(error).__name__}: {error}")
            except (TransientError, PermanentError) as error:
                found.errors[project] = str(error)
        return found

    def _read_project(
        self, project: str, specs: list[ServiceSpec], end: datetime, found: FleetSignals, *, create: bool
    ) -> None:
        escalations = [spec.escalation for spec in specs if spec.escalation is not None]
        period = escalations[0].window  # one length per group
        count = max(e.consecutive_windows for e in escalations)
        ends = [end - timedelta(seconds=period * k) for k in range(count - 1, -1, -1)]  # oldest first
        # By (region, service name), each a list by window index: the project is this one's, and plain
        # strings hash far faster than a ServiceKey does, which counts for a fleet's thousands of series.
        wanted = {(spec.key.region, spec.key.name) for spec in specs}
        requests = request_sums(
            self._series(project, REQUEST_COUNT, period, count, end, REQUEST_GROUP_BY), wanted, count
        )
        counts: dict[str, dict[Where, list[int]]] = {}
        missing = []
        for metric in sorted({m for e in escalations for m in _metric_types(e)}):
            kind = (
                "contention"
                if any(e.contention and e.contention.metric == metric for e in escalations)
                else "storage"
            )
            if not self._log_metric_exists(project, metric, kind, found, create=create):
                missing.append(metric)
                continue
            series = self._series(project, metric, period, count, end, LOG_METRIC_GROUP_BY)
            counts[metric] = log_counts(series, count)
        found.missing[project] = tuple(sorted({*found.missing.get(project, ()), *missing}))
        for spec in specs:
            escalation = spec.escalation
            assert escalation is not None
            where = (spec.key.region, spec.key.name)
            contention = counts.get(escalation.contention.metric if escalation.contention else "", {})
            storage = counts.get(escalation.storage_errors.metric if escalation.storage_errors else "", {})
            windows = windows_of(ends, requests.get(where), contention.get(where), storage.get(where))
            found.windows[spec.key] = windows[-escalation.consecutive_windows :]

    def _series(
        self, project: str, metric: str, period: int, count: int, end: datetime, group_by: Sequence[str]
    ) -> list[Points]:
        """Each series of `metric` with aligned points in the interval: its labels, and its points as
        (window index oldest-first, value)."""
        request = series_request(project, metric, period, count, end, group_by)
        found = []
        with self._call("ListTimeSeries"):
            pager = self._metrics.list_time_series(request=request, retry=self._retry, timeout=_TIMEOUT)
            # The raw protobuf pages: proto-plus would wrap every series, point and timestamp on access.
            pages = [monitoring_v3.ListTimeSeriesResponse.pb(page) for page in pager.pages]
        end_us = (end - _EPOCH) // _MICROSECOND
        for page in pages:
            for series in page.time_series:
                points = []
                for point in series.points:
                    stamp = point.interval.end_time
                    # In whole microseconds, as a datetime holds a timestamp: the age a datetime gives.
                    age = (end_us - (stamp.seconds * 1_000_000 + stamp.nanos // 1000)) / 1_000_000
                    index = count - 1 - round(age / period)  # the window whose end is nearest
                    if 0 <= index < count:
                        value = _count(point.value)
                        if value is not None:
                            points.append((index, value))
                if points:
                    found.append(({**dict(series.resource.labels), **dict(series.metric.labels)}, points))
        return found

    def _log_metric_exists(
        self, project: str, metric: str, kind: str, found: FleetSignals, *, create: bool
    ) -> bool:
        """Whether a log-based metric exists; created when missing and managed. Other metrics are assumed."""
        if not metric.startswith(LOG_METRIC_PREFIX) or self._log_metrics is None:
            return True
        name = metric.removeprefix(LOG_METRIC_PREFIX)
        if (project, name) in self._known:
            return True
        if metric in found.missing.get(project, ()):  # found missing by this read's other window length
            return False
        try:
            with self._call("GetLogMetric"):
                self._log_metrics.get_log_metric(
                    metric_name=f"projects/{project}/metrics/{name}", retry=self._retry, timeout=_TIMEOUT
                )
        except gexc.NotFound:
            if not (self._manage and create):
                return False
            texts = CONTENTION_TEXTS if kind == "contention" else STORAGE_TEXTS
            description = f"SQLite {kind} errors in Cloud Run logs, counted for cloudrun-reconciler"
            with self._call("CreateLogMetric"):
                self._log_metrics.create_log_metric(
                    parent=f"projects/{project}",
                    metric=LogMetric(name=name, filter=log_metric_filter(texts), description=description),
                )
            found.created.append(f"projects/{project}/metrics/{name}")
        self._known.add((project, name))
        return True


def _count(value: Any) -> int | None:
    """A point's count: an ALIGN_DELTA point is a count in its window, INT64 or DOUBLE alike. A value
    that is no count (negative, NaN, infinite, a distribution) is left out, not judged."""
    kind = value.WhichOneof("value")
    if kind == "int64_value":
        number: float = value.int64_value
    elif kind == "double_value":
        number = value.double_value
    else:
        return None
    return round(number) if math.isfinite(number) and number >= 0 else None


def _metric_types(escalation: object) -> Iterator[str]:
    for signal in (getattr(escalation, "contention", None), getattr(escalation, "storage_errors", None)):
        if signal is not None:
            yield signal.metric
