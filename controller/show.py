"""The printable, redacted form of one side of a field change: what logs, plans and status all show.

Owns the one place a value becomes text: durations as `3600s`, unset bounds as `unset`, CPU allocation in
words, env values and annotations with secrets and URL passwords masked.
"""

from __future__ import annotations

import json

from controller.diff import FieldChange, ManagedField, Value
from desired import SecretRef, format_duration
from desired.redaction import redact_env_value, redact_text

__all__ = ["format_value"]


def format_value(change: FieldChange, value: Value) -> str:
    """The printable, redacted form of one side of a change."""
    field = change.field
    if field is ManagedField.ENV:
        shown = redact_env_value(change.key, value if isinstance(value, str | SecretRef) else None)
        return shown if value is None or isinstance(value, SecretRef) else json.dumps(shown)
    if field in (ManagedField.LABEL, ManagedField.ANNOTATION) and isinstance(value, str):
        return json.dumps(redact_text(value))
    if value is None:
        return "unset"
    if field is ManagedField.TIMEOUT:
        assert isinstance(value, int | float)
        return format_duration(value)
    if field is ManagedField.CPU_IDLE:
        return "true (throttled)" if value else "false (always allocated)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
