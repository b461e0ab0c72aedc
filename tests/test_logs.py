"""Log lines as configured at the entry point: a traceback is text, and scrubbed like every other value."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from controller.logs import configure_logging

PASSWORD = "s3cr3t-pa55"


@pytest.mark.parametrize("json_lines", [True, False])
def test_a_logged_exception_carries_its_traceback_without_a_password(json_lines: bool) -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream, json_lines=json_lines)
    try:
        try:
            raise RuntimeError(f"cannot open postgresql://app:{PASSWORD}@db/sessions")
        except RuntimeError:
            structlog.get_logger("test").exception("pass_crashed")
    finally:
        configure_logging("warning")
    text = stream.getvalue()
    assert PASSWORD not in text
    assert "Traceback" in text and "RuntimeError: cannot open postgresql://app:***@db/sessions" in text
    if json_lines:
        line = json.loads(text)
        assert line["severity"] == "ERROR" and "Traceback" in line["exception"]
