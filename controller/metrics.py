"""The controller's Prometheus metrics, in a registry of its own (one per controller, so tests stay apart).

Owns the names, labels and help texts served on `/metrics`. Labels hold service and field names, never
values. Recording happens in `controller.runner`; nothing else writes these.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from desired import ServiceKey

__all__ = ["SERVICE", "Metrics", "service_labels"]

_PREFIX = "cloudrun_reconciler"
# A service is named by all three: one name can stand in several projects and regions.
SERVICE = ["service", "project", "region"]


def service_labels(key: ServiceKey) -> tuple[str, str, str]:
    """The values of `SERVICE` for one service."""
    return key.name, key.project, key.region


disable_created_metrics()  # type: ignore[no-untyped-call]  # the `_created` series double what is served and say nothing an operator needs


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Gauge] = {}
        r = self.registry
        self.passes = Counter(
            f"{_PREFIX}_passes", "Reconcile passes by result (ok, failed, cut)", ["result"], registry=r
        )
        self.pass_duration = Histogram(
            f"{_PREFIX}_pass_duration_seconds",
            "Wall time of a reconcile pass",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.drift = Counter(
            f"{_PREFIX}_drift",
            "Drifted fields found, by service and field path",
            [*SERVICE, "field"],
            registry=r,
        )
        self.applies = Counter(
            f"{_PREFIX}_applies",
            "Service updates by result (applied, failed)",
            [*SERVICE, "result"],
            registry=r,
        )
        self.errors = Counter(
            f"{_PREFIX}_errors",
            "Errors by kind (transient, permanent, desired_file, conflict, pass)",
            ["kind"],
            registry=r,
        )
        self.retries = Counter(
            f"{_PREFIX}_retries",
            "Writes tried again, by reason (conflict: re-read and re-planned after a stale etag; "
            "backoff: the first write of a service after its backoff)",
            ["reason"],
            registry=r,
        )
        self.api_calls = Counter(
            f"{_PREFIX}_api_calls",
            "Google API calls by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.in_sync = Gauge(
            f"{_PREFIX}_service_in_sync",
            "1 when the service matched its desired state",
            SERVICE,
            registry=r,
        )
        self.held_fields = Gauge(
            f"{_PREFIX}_flap_held_fields", "Fields the flap guard stopped correcting", SERVICE, registry=r
        )
        self.escalation = Gauge(
            f"{_PREFIX}_escalation_state",
            "Escalation state per service: 0 SQLite, 1 escalated to Cloud SQL, -1 escalation failed",
            SERVICE,
            registry=r,
        )
        self.escalations = Counter(
            f"{_PREFIX}_escalations",
            "Escalations to Cloud SQL by result (escalated, failed)",
            [*SERVICE, "result"],
            registry=r,
        )
        self.error_ratio = Gauge(
            f"{_PREFIX}_service_5xx_ratio",
            "Share of requests answered 5xx in the newest signal window",
            SERVICE,
            registry=r,
        )
        self.desired_valid = Gauge(
            f"{_PREFIX}_desired_file_valid", "1 when the desired file as last read is valid", registry=r
        )
        self.last_pass = Gauge(
            f"{_PREFIX}_last_pass_timestamp_seconds", "When the last pass ended (Unix time)", registry=r
        )

    def child(self, metric: Gauge, *labels: str) -> Gauge:
        """`metric.labels(*labels)`, looked up once: a pass sets a few gauges per service, and the
        library's lookup checks and locks every time. (Nothing here removes a labelled child.)"""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
