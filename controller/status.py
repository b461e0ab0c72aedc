"""What `/status` says: per service, Kubernetes-style conditions and the last plan and outcome. Thread-safe.

Owns the status document. A condition keeps the time it last changed status and the service generation it
was observed at, as Kubernetes conditions do, so an operator reads both what is true and since when. Every
value shown went through `controller.show` and is redacted; the document never holds a secret.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from desired import ServiceKey

__all__ = ["Condition", "StatusBoard"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        return {
            "type": document["type"],
            "status": document["status"],
            "reason": document["reason"],
            "message": document["message"],
            "lastTransitionTime": document["last_transition_time"],
            "observedGeneration": document["observed_generation"],
        }


@dataclass
class _Service:
    conditions: dict[str, Condition] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)


class StatusBoard:
    """The controller's state as operators read it; written by the loop, read by the HTTP handlers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[ServiceKey, _Service] = {}
        self._controller: dict[str, Any] = {}

    def condition(
        self,
        key: ServiceKey,
        type_: str,
        status: bool | None,
        reason: str,
        message: str,
        *,
        generation: int,
        now: datetime,
    ) -> bool:
        """Set a condition; its transition time moves only when its status does. True when it moved."""
        text = "Unknown" if status is None else str(status)
        with self._lock:
            service = self._service(key)
            old = service.conditions.get(type_)
            if old is not None and (old.status, old.reason, old.message, old.observed_generation) == (
                text,
                reason,
                message,
                generation,
            ):
                return False  # as it was: nothing to record, and nothing to allocate for a steady fleet
            moved = old is None or old.status != text
            since = now.isoformat() if moved or old is None else old.last_transition_time
            service.conditions[type_] = Condition(type_, text, reason, message, since, generation)
            return moved

    def sections(self, key: ServiceKey, **values: Any) -> None:
        """Set several sections of one service at once, in the order given."""
        with self._lock:
            self._service(key).sections.update(values)

    def _service(self, key: ServiceKey) -> _Service:
        """The entry of `key`, made on first use (held lock)."""
        service = self._services.get(key)
        if service is None:
            service = self._services[key] = _Service()
        return service

    def get_condition(self, key: ServiceKey, type_: str) -> Condition | None:
        with self._lock:
            service = self._services.get(key)
            return None if service is None else service.conditions.get(type_)

    def controller(self, **values: Any) -> None:
        with self._lock:
            self._controller.update(values)

    def keep_only(self, keys: set[ServiceKey]) -> None:
        """Forget services no longer declared."""
        with self._lock:
            for key in [k for k in self._services if k not in keys]:
                del self._services[key]

    def document(self) -> dict[str, Any]:
        with self._lock:
            return {
                "controller": dict(self._controller),
                "services": [
                    {
                        "name": key.name,
                        "project": key.project,
                        "region": key.region,
                        "conditions": [c.as_dict() for c in service.conditions.values()],
                        **service.sections,
                    }
                    for key, service in sorted(self._services.items(), key=lambda item: str(item[0]))
                ],
            }
