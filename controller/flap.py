"""The flap guard: stop a tug of war over a field instead of fighting it forever. Pure.

Owns the record of reverts. Each time a pass writes back a field someone else had changed, the guard
notes who changed it and when. When one field of one service has been reverted `limit` times within
`window` (the other side has changed it back that often), the guard holds it: their next change is left
in place and reported as a Conflict naming them (argo-cd#5105 and k8s-config-connector#3194 are the
endless version of this fight). A hold ends when the desired spec of the service changes (someone
decided), when the live value is back to the desired one after a held change (the other side gave in),
or after `window` with no further change to the field (the fight stopped); then the count starts again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from desired import ServiceKey

__all__ = ["FlapGuard", "FlapPolicy", "Hold"]


@dataclass(frozen=True)
class FlapPolicy:
    limit: int = 3  # reverts within the window; the one that reaches it engages the hold
    window: float = 3600.0


@dataclass(frozen=True)
class Hold:
    """A field the controller has stopped correcting."""

    path: str
    writer: str
    reverts: int
    since: float
    last_change: float  # when the live value was last seen to change while held
    token: str = ""  # a fingerprint of the live value (never the value), to see it change again
    contested: bool = False  # a change was left in place under this hold

    def describe(self) -> str:
        return (
            f"{self.path} was changed back by {self.writer or 'someone else'} after {self.reverts} "
            "corrections within the flap window; not correcting it until the desired file changes "
            "or the fight stops"
        )


@dataclass
class _Field:
    reverts: deque[float] = field(default_factory=deque)
    hold: Hold | None = None


class FlapGuard:
    """Per (service, field): the times it was reverted, and the hold once it flaps."""

    def __init__(self, policy: FlapPolicy | None = None) -> None:
        self.policy = policy or FlapPolicy()
        self._fields: dict[tuple[ServiceKey, str], _Field] = {}

    def held(self, key: ServiceKey) -> dict[str, Hold]:
        return {
            path: state.hold
            for (service, path), state in self._fields.items()
            if service == key and state.hold is not None
        }

    def holds(self) -> dict[ServiceKey, dict[str, Hold]]:
        found: dict[ServiceKey, dict[str, Hold]] = {}
        for (service, path), state in self._fields.items():
            if state.hold is not None:
                found.setdefault(service, {})[path] = state.hold
        return found

    def reverted(self, key: ServiceKey, path: str, writer: str, now: float) -> Hold | None:
        """Note that `path` was written back after `writer` changed it; the hold, if this engages one."""
        state = self._fields.setdefault((key, path), _Field())
        if state.hold is not None:
            return None
        state.reverts.append(now)
        while state.reverts and state.reverts[0] <= now - self.policy.window:
            state.reverts.popleft()
        if len(state.reverts) < self.policy.limit:
            return None
        state.hold = Hold(path, writer, len(state.reverts), now, now)
        state.reverts.clear()
        return state.hold

    def observe(self, key: ServiceKey, drifted: dict[str, str], now: float, writer: str = "") -> list[Hold]:
        """Given the drifted paths of a service (path → live-value fingerprint) as a pass saw them, and
        who last wrote it, end the holds whose field is back in sync after a held change, or was left
        alone for the window; return those ended. A held field changed again names its new writer."""
        ended = []
        for (service, path), state in self._fields.items():
            hold = state.hold
            if service != key or hold is None:
                continue
            token = drifted.get(path)
            if now - hold.last_change >= self.policy.window or (token is None and hold.contested):
                ended.append(hold)
                state.hold = None
            elif token is not None and token != hold.token:
                state.hold = Hold(
                    hold.path, writer or hold.writer, hold.reverts, hold.since, now, token, True
                )
        return ended

    def expire(self, now: float) -> list[tuple[ServiceKey, Hold]]:
        """End the holds whose field was left alone for the window (run before a pass, so that pass
        corrects it again)."""
        ended = []
        for (service, _), state in self._fields.items():
            if state.hold is not None and now - state.hold.last_change >= self.policy.window:
                ended.append((service, state.hold))
                state.hold = None
        return ended

    def release(self, key: ServiceKey) -> list[Hold]:
        """End every hold and count of a service (its desired spec changed)."""
        ended = []
        for service, path in [k for k in self._fields if k[0] == key]:
            hold = self._fields.pop((service, path)).hold
            if hold is not None:
                ended.append(hold)
        return ended
