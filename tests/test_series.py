"""Time series points summed into each service's windows: requests, 5xx and revisions, log entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.escalation import Window
from controller.series import log_counts, request_sums, windows_of

ENDS = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=5 * k) for k in range(3)]


def _labels(service: str, revision: str, code: str) -> dict[str, str]:
    return {
        "location": "r",
        "service_name": service,
        "revision_name": revision,
        "response_code_class": code,
    }


def test_requests_sum_by_service_window_and_revision_and_a_window_without_points_has_no_data() -> None:
    series = [
        (_labels("a", "a-2", "2xx"), [(0, 10), (2, 7)]),
        (_labels("a", "a-1", "5xx"), [(2, 3)]),
        (_labels("a", "a-1", "2xx"), [(2, 0)]),
        (_labels("other", "o-1", "2xx"), [(2, 99)]),  # not a declared service: left out
    ]
    sums = request_sums(series, {("r", "a")}, 3)
    assert set(sums) == {("r", "a")}
    contention = log_counts([({"location": "r", "service_name": "a"}, [(2, 1), (2, 2)])], 3)
    assert windows_of(ENDS, sums[("r", "a")], contention[("r", "a")], None) == [
        Window(end=ENDS[0], requests=10, by_revision=(("a-2", 10, 0),)),
        Window(end=ENDS[1], requests=None),
        Window(
            end=ENDS[2], requests=10, errors_5xx=3, contention=3, by_revision=(("a-1", 3, 3), ("a-2", 7, 0))
        ),
    ]


def test_a_service_without_series_has_no_data_in_any_window() -> None:
    assert windows_of(ENDS, None, None, None) == [Window(end=end, requests=None) for end in ENDS]
