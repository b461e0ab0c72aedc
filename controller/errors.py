"""The controller's own errors; adapters translate Google's exceptions into these at the boundary.

    ReconcilerError
    ├── TransientError     try again later: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, …
    │   └── ConflictError  the service changed since it was read (stale etag): re-read, re-plan, retry
    └── PermanentError     retrying the same request cannot help: INVALID_ARGUMENT, PERMISSION_DENIED, …
        ├── NotFoundError  the service does not exist
        └── RolloutError   the update was accepted, and its revision failed to become ready

Every message here is already redacted: it may be logged or printed as is.
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "NotFoundError",
    "PermanentError",
    "ReconcilerError",
    "RolloutError",
    "TransientError",
]


class ReconcilerError(Exception):
    """Base of everything the controller raises on purpose. `code` is the API status name, if any."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class TransientError(ReconcilerError):
    """The same request may succeed later."""


class ConflictError(TransientError):
    """The service's etag no longer matches what was read."""


class PermanentError(ReconcilerError):
    """The request itself is wrong or not allowed; it will fail again until something changes."""


class NotFoundError(PermanentError):
    """The named resource does not exist."""


class RolloutError(PermanentError):
    """The API accepted the update; the long-running operation then failed (a revision not ready)."""
