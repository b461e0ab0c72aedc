"""Time as the controller sees it: a monotonic clock for scheduling and a wall clock for status.

Owns the `Clock` protocol every time-dependent part takes as an argument, the real `SystemClock`, and
`ManualClock`, which moves only when told to: tests and the demo's compressed loop run on it, so no
schedule is ever checked by sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    def now(self) -> datetime:
        """The wall time in UTC, for status and logs."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until `advance` moves it (thread-safe)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._elapsed = 0.0
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._elapsed += seconds
