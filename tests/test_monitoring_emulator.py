"""The emulator's Cloud Monitoring ListTimeSeries, driven by the unmodified google-cloud-monitoring client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport

from emulator import Emulator

END = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
REQUESTS = "run.googleapis.com/request_count"


@pytest.fixture
def metrics(emulator: Emulator) -> Iterator[monitoring_v3.MetricServiceClient]:
    client = monitoring_v3.MetricServiceClient(
        transport=MetricServiceGrpcTransport(channel=grpc.insecure_channel(emulator.address))
    )
    yield client
    client.transport.close()


def _seed(emulator: Emulator) -> None:
    for minutes_ago, service, revision, code_class, count in [
        (1, "cagent-api", "r2", "5xx", 3),
        (1, "cagent-api", "r2", "2xx", 97),
        (2, "cagent-api", "r1", "5xx", 1),
        (7, "cagent-api", "r1", "2xx", 50),
        (1, "other", "o1", "2xx", 10),
        (30, "cagent-api", "r1", "5xx", 99),
    ]:
        emulator.metrics.add_point(
            REQUESTS,
            count,
            END - timedelta(minutes=minutes_ago),
            resource_labels={
                "project_id": "demo-project",
                "service_name": service,
                "revision_name": revision,
            },
            metric_labels={"response_code_class": code_class},
        )


def _request(filter_: str, **aggregation: object) -> monitoring_v3.ListTimeSeriesRequest:
    return monitoring_v3.ListTimeSeriesRequest(
        name="projects/demo-project",
        filter=filter_,
        interval=monitoring_v3.TimeInterval(start_time=END - timedelta(minutes=10), end_time=END),
        aggregation=monitoring_v3.Aggregation(**aggregation) if aggregation else None,
    )


def test_one_call_sums_a_fleet_by_service_and_code_class(
    emulator: Emulator, metrics: monitoring_v3.MetricServiceClient
) -> None:
    _seed(emulator)
    request = _request(
        f'metric.type = "{REQUESTS}" AND resource.type = "cloud_run_revision"',
        alignment_period={"seconds": 600},
        per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_DELTA,
        cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
        group_by_fields=["resource.labels.service_name", "metric.labels.response_code_class"],
    )
    got = {
        (s.resource.labels["service_name"], s.metric.labels["response_code_class"]): [
            p.value.int64_value for p in s.points
        ]
        for s in metrics.list_time_series(request=request)
    }
    # the point 30 minutes ago is outside the interval; r1 and r2 are summed per service
    assert got == {("cagent-api", "5xx"): [4], ("cagent-api", "2xx"): [147], ("other", "2xx"): [10]}


def test_windows_and_rates(emulator: Emulator, metrics: monitoring_v3.MetricServiceClient) -> None:
    _seed(emulator)
    request = _request(
        f'metric.type = "{REQUESTS}" AND resource.labels.service_name = "cagent-api" '
        'AND metric.labels.response_code_class = one_of("5xx")',
        alignment_period={"seconds": 300},
        per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_RATE,
        cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
        group_by_fields=["resource.labels.service_name"],
    )
    (series,) = metrics.list_time_series(request=request)
    assert [round(p.value.double_value, 6) for p in series.points] == [round(4 / 300, 6)]


def test_raw_points_newest_first_and_paging(
    emulator: Emulator, metrics: monitoring_v3.MetricServiceClient
) -> None:
    _seed(emulator)
    request = _request(f'metric.type = "{REQUESTS}"')
    request.page_size = 2
    pager = metrics.list_time_series(request=request)
    series = list(pager)
    assert len(series) == 5 and emulator.store.calls["ListTimeSeries"] == 3


@pytest.mark.parametrize("filter_", ["", 'resource.type = "x"', 'metric.type = "a" OR metric.type = "b"'])
def test_a_filter_it_does_not_understand_is_invalid(
    emulator: Emulator, metrics: monitoring_v3.MetricServiceClient, filter_: str
) -> None:
    with pytest.raises(gexc.InvalidArgument):
        list(metrics.list_time_series(request=_request(filter_)))
