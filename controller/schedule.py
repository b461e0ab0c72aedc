"""When to act next: the jittered pass interval and the per-service backoff after errors. Pure.

Owns the numbers. The pass interval is stretched by a random share (never shortened), so a fleet of
controllers started together drifts apart, as Kubernetes' `wait.Jitter` does. After a failed write a
service waits before it is written again: a transient error (unavailable, deadline, a conflict that
outlived its retries) backs off from 2 s, times 3, up to 300 s, as Argo CD's self-heal does; a permanent
one (the request is invalid or not allowed, the revision failed) waits the maximum at once, since the same
request will fail the same way until the desired file or the service changes. Success, or a change of the
service's desired spec, resets it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff", "BackoffPolicy", "jittered"]


def jittered(interval: float, jitter: float, draw: float) -> float:
    """`interval` stretched by up to `jitter` of itself; `draw` is uniform in [0, 1)."""
    if not 0.0 <= draw < 1.0:
        raise ValueError(f"draw must be in [0, 1), got {draw}")
    return interval * (1.0 + jitter * draw)


@dataclass(frozen=True)
class BackoffPolicy:
    initial: float = 2.0
    factor: float = 3.0
    maximum: float = 300.0

    def delay(self, failures: int, *, permanent: bool) -> float:
        """The wait after the `failures`-th failure in a row."""
        if failures < 1:
            return 0.0
        if permanent:
            return self.maximum
        return float(min(self.maximum, self.initial * self.factor ** (failures - 1)))


@dataclass(frozen=True)
class Backoff:
    """One service's backoff: how many failures in a row, and when it may be written again."""

    failures: int = 0
    retry_at: float = 0.0
    permanent: bool = False
    reason: str = ""

    def waiting(self, now: float) -> bool:
        return self.failures > 0 and now < self.retry_at

    def failed(self, policy: BackoffPolicy, now: float, *, permanent: bool, reason: str) -> Backoff:
        failures = self.failures + 1
        return Backoff(failures, now + policy.delay(failures, permanent=permanent), permanent, reason)
