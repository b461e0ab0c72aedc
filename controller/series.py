"""Time series points summed into each service's signal windows. Pure.

Owns the arithmetic between what `ListTimeSeries` answers (series with labels and points, already placed
in their window by `controller.signals`) and the `Window`s the escalation decision reads: requests, 5xx
and both by revision per service and window (None where a window has no point), log entries per service
and window. Services are keyed by (region, service name) within one project: plain strings hash far
faster than a `ServiceKey`, which counts for a fleet's thousands of series.
"""

from __future__ import annotations

from datetime import datetime

from controller.escalation import Window

__all__ = ["Points", "Sums", "Where", "log_counts", "request_sums", "windows_of"]

Where = tuple[str, str]  # (region, service name)
Points = tuple[dict[str, str], list[tuple[int, int]]]  # a series: its labels, its (window index, value)s


class Sums:
    """One service's requests in one window: all, 5xx, and both by revision."""

    __slots__ = ("fives", "revisions", "total")

    def __init__(self) -> None:
        self.total = self.fives = 0
        self.revisions: dict[str, list[int]] = {}

    def add(self, revision: str, value: int, five: bool) -> None:
        fives = value if five else 0
        self.total += value
        self.fives += fives
        per = self.revisions.get(revision)
        if per is None:
            per = self.revisions[revision] = [0, 0]
        per[0] += value
        per[1] += fives


def request_sums(series: list[Points], wanted: set[Where], count: int) -> dict[Where, list[Sums | None]]:
    """Request counts by service and window; None where a window has no point at all."""
    sums: dict[Where, list[Sums | None]] = {}
    for labels, points in series:
        where = (labels.get("location", ""), labels.get("service_name", ""))
        if where not in wanted:
            continue
        five = labels.get("response_code_class") == "5xx"
        revision = labels.get("revision_name", "")
        slots = sums.get(where)
        if slots is None:
            slots = sums[where] = [None] * count
        for index, value in points:
            slot = slots[index]
            if slot is None:
                slot = slots[index] = Sums()
            slot.add(revision, value, five)
    return sums


def log_counts(series: list[Points], count: int) -> dict[Where, list[int]]:
    """Log entries by service and window."""
    counts: dict[Where, list[int]] = {}
    for labels, points in series:
        where = (labels.get("location", ""), labels.get("service_name", ""))
        slots = counts.get(where)
        if slots is None:
            slots = counts[where] = [0] * count
        for index, value in points:
            slots[index] += value
    return counts


def windows_of(
    ends: list[datetime],
    sums: list[Sums | None] | None,
    contention: list[int] | None,
    storage: list[int] | None,
) -> list[Window]:
    """One service's windows ending at `ends` (oldest first), from its sums and log counts (None: none)."""
    windows = []
    for index, window_end in enumerate(ends):
        summed = sums[index] if sums is not None else None
        windows.append(
            Window(
                end=window_end,
                requests=None if summed is None else summed.total,
                errors_5xx=0 if summed is None else summed.fives,
                contention=contention[index] if contention is not None else 0,
                storage=storage[index] if storage is not None else 0,
                by_revision=()
                if summed is None
                else tuple((revision, r[0], r[1]) for revision, r in sorted(summed.revisions.items())),
            )
        )
    return windows
