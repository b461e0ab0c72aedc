"""Durations as people write them in `desired-state.yaml` (`3600s`, `60m`, `1h`, `1h30m`, `3600`).

Owns one conversion in each direction, so that `3600s`, `60m` and `1h` are the same value everywhere:
in validation, in the diff, and in what the plan prints.
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str | int) -> int:
    """Return whole seconds for `text`; raise ValueError with a reason a person can act on."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 3600s, 60m or 1h, got a boolean")
    if isinstance(text, int):
        return text
    spelled = text.strip()
    if spelled.isdigit():
        return int(spelled)
    match = _DURATION.fullmatch(spelled)
    if not spelled or match is None or not any(match.groups()):
        raise ValueError(f"expected a duration such as 3600s, 60m or 1h, got {text!r}")
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return hours * _UNIT_SECONDS["h"] + minutes * _UNIT_SECONDS["m"] + seconds


def format_duration(seconds: float) -> str:
    """Print seconds as the API does (`3600s`), keeping a fraction only when there is one."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:g}s"
