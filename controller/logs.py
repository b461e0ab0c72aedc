"""Logging set up once, at the entry point: structlog, Cloud Logging's JSON when not on a terminal.

Owns the processor chain every log line passes through, including the last line of defence for secrets:
every string value is scrubbed of URL passwords before it is rendered. Modules only call
`structlog.get_logger()` and bind fields; they never configure anything.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from desired.redaction import redact_text

__all__ = ["configure_logging"]

_SEVERITY = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR", "critical": "CRITICAL"}


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {key: _scrub(value) for key, value in event.items()}


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    return value


def _cloud_logging(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Cloud Logging reads `severity` and `message` from a JSON line on stdout or stderr."""
    event["severity"] = _SEVERITY.get(str(event.pop("level", "info")), "DEFAULT")
    event["message"] = event.pop("event", "")
    return event


def configure_logging(
    level: str = "warning", stream: TextIO | None = None, json_lines: bool | None = None
) -> None:
    """Route structlog to `stream` (stderr) at `level`; JSON unless `stream` is a terminal."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    renderer: list[Any] = (
        [_cloud_logging, structlog.processors.JSONRenderer()]
        if json_lines
        else [structlog.dev.ConsoleRenderer(colors=stream.isatty())]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            structlog.processors.format_exc_info,  # the traceback as text, so that it is scrubbed too
            _redact,
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
