"""The fleet the benchmarks run against: a desired file of N services and the emulator state behind it.

Each service is the reference `cagent-api` shape (SQLite on a Cloud Storage volume, a WAL `DATABASE_URL`,
always-on CPU, service-level scaling, gen2) with an `escalation` naming two log-based signals, so a pass
reads three time series per project: `request_count` and the two SQLite error metrics. Services are seeded
as a `gcloud run deploy` with defaults leaves them (drifted); the first controller pass converges them and
writes its applied records, after which the fleet is in the steady state a restarted controller finds.

Request counts are fed per minute for the 40 minutes before `now` (2xx for every service, a few 5xx for
one in ten, `database is locked` for one in ten, under every threshold), so each pass's windows hold data
and every verdict is Healthy for the length of a run.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from google.cloud import logging_v2
from google.protobuf import duration_pb2

if TYPE_CHECKING:  # the worker imports the names below and must not load the emulator into its memory
    from emulator import Emulator

PROJECT = "bench-project"
REGION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
REQUEST_COUNT = "run.googleapis.com/request_count"
CONTENTION = "logging.googleapis.com/user/sqlite_contention"
STORAGE = "logging.googleapis.com/user/sqlite_storage_errors"
SIGNALS = (REQUEST_COUNT, CONTENTION, STORAGE)  # one ListTimeSeries each per pass
FED_MINUTES = 40


def name(index: int) -> str:
    return f"svc-{index:04d}"


def resource_name(index: int) -> str:
    return f"{PARENT}/services/{name(index)}"


def desired_yaml(count: int) -> str:
    """The desired file for `count` services (one project and region)."""
    lines = [
        "apiVersion: cloudrun-reconciler/v1alpha1",
        "controller: {interval: 30s, dryRun: false}",
        f"defaults: {{project: {PROJECT}, region: {REGION}}}",
        "services:",
    ]
    for index in range(count):
        service = name(index)
        lines += [
            f"  - name: {service}",
            "    timeout: 3600s",
            "    scaling: {level: service, minInstances: 1, maxInstances: 1}",
            "    cpuAlwaysAllocated: true",
            "    executionEnvironment: gen2",
            '    env: {DATABASE_URL: "sqlite:///work/sessions.db?_journal_mode=WAL&_busy_timeout=5000"}',
            f"    volume: {{name: sessions, bucket: {PROJECT}-{service}, mountPath: /work,"
            " mountOptions: [enable-streaming-writes=false]}",
            f"    labels: {{team: team-{index % 7}}}",
            "    database: {env: DATABASE_URL, dialect: mattn}",
            "    escalation:",
            "      window: 5m",
            "      consecutiveWindows: 3",
            "      minRequests: 20",
            f"      contention: {{metric: {CONTENTION}, maxRate: 0.05}}",
            f"      storageErrors: {{metric: {STORAGE}, maxCount: 0}}",
            f"      cloudSql: {{instance: '{PROJECT}:{REGION}:{service}-sql',"
            f" databaseUrl: {{secret: {service}-cloudsql-url, version: latest}}}}",
        ]
    return "\n".join(lines) + "\n"


def _as_found(index: int) -> dict[str, object]:
    """A service as deployed with Cloud Run's defaults, plus what others own (image, LOG_LEVEL)."""
    service = name(index)
    return {
        "name": resource_name(index),
        "client": "gcloud",
        "labels": {"owner": "ci"},
        "template": {
            "containers": [
                {
                    "name": service,
                    "image": f"us-docker.pkg.dev/{PROJECT}/apps/{service}:2026.11.{index % 30}",
                    "ports": [{"name": "http1", "containerPort": 8080}],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "cpuIdle": True},
                    "env": [
                        {"name": "DATABASE_URL", "value": "sqlite:///work/sessions.db"},
                        {"name": "LOG_LEVEL", "value": "info"},
                    ],
                    "volumeMounts": [{"name": "sessions", "mountPath": "/work"}],
                }
            ],
            "volumes": [{"name": "sessions", "gcs": {"bucket": f"{PROJECT}-{service}"}}],
        },
    }


def seed(server: Emulator, count: int, now: datetime) -> None:
    """The services as found, the two log-based metrics, and 40 minutes of points up to `now`."""
    seed_services(server, count)
    for metric in (CONTENTION, STORAGE):
        log_metric = logging_v2.types.LogMetric.pb()(
            name=metric.rsplit("/", 1)[-1], filter='resource.type="cloud_run_revision"'
        )
        server.log_metrics.create(f"projects/{PROJECT}", log_metric)
    for index in range(count):
        _feed(server, index, now)


def seed_services(server: Emulator, count: int) -> None:
    """The services alone, as found."""
    from emulator import service_from_dict

    for index in range(count):
        server.store.seed(service_from_dict(_as_found(index)), principal="user:ci@example.com")


def _feed(server: Emulator, index: int, now: datetime) -> None:
    revision = server.store.get(resource_name(index)).latest_ready_revision.rsplit("/", 1)[-1]
    labels = {
        "project_id": PROJECT,
        "location": REGION,
        "service_name": name(index),
        "revision_name": revision,
    }
    for minute in range(FED_MINUTES):
        end = now - timedelta(minutes=minute)
        server.metrics.add_point(
            REQUEST_COUNT, 30, end, resource_labels=labels, metric_labels={"response_code_class": "2xx"}
        )
        if index % 10 == 3:
            server.metrics.add_point(
                REQUEST_COUNT, 1, end, resource_labels=labels, metric_labels={"response_code_class": "5xx"}
            )
        if index % 10 == 7:
            server.metrics.add_point(CONTENTION, 1, end, resource_labels=labels)


def drift(server: Emulator, indexes: range) -> None:
    """A `gcloud run deploy` of a new image on each service, which resets the template's timeout to 300 s."""

    def deploy(service: object) -> None:
        template = service.template  # type: ignore[attr-defined]
        template.timeout.CopyFrom(duration_pb2.Duration(seconds=300))
        template.containers[0].image += "-hotfix"

    for index in indexes:
        server.store.edit(resource_name(index), deploy, principal="user:dev@example.com", client="gcloud")
