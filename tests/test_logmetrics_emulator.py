"""The emulator's Cloud Logging MetricsServiceV2, driven by the unmodified google-cloud-logging client."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import logging_v2
from google.cloud.logging_v2.services.metrics_service_v2 import MetricsServiceV2Client
from google.cloud.logging_v2.services.metrics_service_v2.transports import MetricsServiceV2GrpcTransport

from emulator import Emulator

PARENT = "projects/demo-project"
FILTER = 'resource.type="cloud_run_revision" AND textPayload:"database is locked"'


@pytest.fixture
def log_metrics(emulator: Emulator) -> Iterator[MetricsServiceV2Client]:
    client = MetricsServiceV2Client(
        transport=MetricsServiceV2GrpcTransport(channel=grpc.insecure_channel(emulator.address))
    )
    yield client
    client.transport.close()


def test_create_get_update_list(emulator: Emulator, log_metrics: MetricsServiceV2Client) -> None:
    created = log_metrics.create_log_metric(
        parent=PARENT, metric=logging_v2.types.LogMetric(name="sqlite_contention", filter=FILTER)
    )
    assert created.metric_descriptor.type == "logging.googleapis.com/user/sqlite_contention"
    assert created.metric_descriptor.unit == "1" and created.create_time
    with pytest.raises(gexc.AlreadyExists):
        log_metrics.create_log_metric(
            parent=PARENT, metric=logging_v2.types.LogMetric(name="sqlite_contention", filter=FILTER)
        )
    fetched = log_metrics.get_log_metric(metric_name=f"{PARENT}/metrics/sqlite_contention")
    assert fetched.filter == FILTER
    updated = log_metrics.update_log_metric(
        metric_name=f"{PARENT}/metrics/sqlite_contention",
        metric=logging_v2.types.LogMetric(
            name="sqlite_contention", filter=FILTER + ' OR textPayload:"disk I/O error"'
        ),
    )
    assert updated.filter.endswith('"disk I/O error"') and updated.create_time == created.create_time
    assert [m.name for m in log_metrics.list_log_metrics(parent=PARENT)] == ["sqlite_contention"]


def test_a_missing_metric_is_not_found_and_an_empty_filter_is_invalid(
    log_metrics: MetricsServiceV2Client,
) -> None:
    with pytest.raises(gexc.NotFound):
        log_metrics.get_log_metric(metric_name=f"{PARENT}/metrics/nope")
    with pytest.raises(gexc.InvalidArgument):
        log_metrics.create_log_metric(parent=PARENT, metric=logging_v2.types.LogMetric(name="x", filter=" "))
