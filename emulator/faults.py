"""Failures to inject into the emulator's API, per method, for tests and soak runs.

Owns three kinds: the next N calls of a method fail with a chosen code (deterministic), a share of calls
fail at random from a seeded generator (repeatable), with one code or one drawn from several, and added
latency per method (through an injectable `sleep`, so tests count delays instead of timing them), and the
count of failures injected, by method and code, so a soak reads what it did rather than guessing.
Thread-safe; the gRPC layer asks before each call.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from emulator.rules import ApiError

__all__ = ["Faults"]


@dataclass
class _Share:
    share: float
    codes: tuple[grpc.StatusCode, ...]
    rng: random.Random

    def draw(self) -> grpc.StatusCode | None:
        if self.rng.random() >= self.share:
            return None
        return self.codes[0] if len(self.codes) == 1 else self.rng.choice(self.codes)


@dataclass
class Faults:
    """What to fail next. Methods are named as on the wire: `UpdateService`, `ListServices`, …"""

    _next: dict[str, list[ApiError]] = field(default_factory=dict)
    _shares: dict[str, _Share] = field(default_factory=dict)
    _latency: dict[str, float] = field(default_factory=dict)
    _injected: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopped: threading.Event = field(default_factory=threading.Event)
    sleep: Callable[[float], object] | None = None  # None: real time, cut short when the emulator stops

    def stop(self) -> None:
        """End every added wait at once: the emulator is shutting down, and must not outlive its grace."""
        self._stopped.set()

    def add_latency(self, method: str, seconds: float) -> None:
        """Every later call of `method` waits `seconds` before it is answered (0 removes it)."""
        with self._lock:
            self._latency[method] = seconds

    def fail_next(
        self,
        method: str,
        count: int = 1,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        message: str = "",
    ) -> None:
        """The next `count` calls of `method` fail with `code`."""
        error = ApiError(code, message or f"injected fault: {code.name}")
        with self._lock:
            self._next.setdefault(method, []).extend([error] * count)

    def fail_share(
        self,
        method: str,
        share: float,
        code: grpc.StatusCode | Sequence[grpc.StatusCode] = grpc.StatusCode.UNAVAILABLE,
        seed: int = 0,
    ) -> None:
        """From now on, about `share` of the calls of `method` fail with `code` (or with one of several
        codes, each failure drawing one), drawn from `seed`."""
        codes = (code,) if isinstance(code, grpc.StatusCode) else tuple(code)
        if not codes:
            raise ValueError("fail_share needs at least one status code")
        with self._lock:
            self._shares[method] = _Share(share, codes, random.Random(seed))

    def injected(self) -> dict[str, dict[str, int]]:
        """The failures injected so far (since the emulator started; `clear` keeps them), by method and
        code name."""
        with self._lock:
            found: dict[str, dict[str, int]] = {}
            for (method, code), count in sorted(self._injected.items()):
                found.setdefault(method, {})[code] = count
            return found

    def clear(self) -> None:
        with self._lock:
            self._next.clear()
            self._shares.clear()
            self._latency.clear()

    def take(self, method: str) -> ApiError | None:
        """Wait the method's added latency, then return the failure for this call, if any."""
        with self._lock:
            delay = self._latency.get(method, 0.0)
        if delay > 0:
            (self.sleep or self._stopped.wait)(delay)
        with self._lock:
            queued = self._next.get(method)
            error = queued.pop(0) if queued else None
            share = self._shares.get(method) if error is None else None
            drawn = share.draw() if share is not None else None
            if drawn is not None:
                error = ApiError(drawn, f"injected fault: {drawn.name}")
            if error is not None:
                self._injected[(method, error.code.name)] += 1
            return error
