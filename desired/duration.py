"""Durations as people write them in `desired-state.yaml` (`3600s`, `60m`, `1h`, `1h30m`, `3600`).

Owns one conversion in each direction, so that `3600s`, `60m` and `1h` are the same value everywhere:
in validation, in the diff, and in what the plan prints.
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_DIGITS = re.compile(r"[0-9]+")
_MAX_SECONDS = 10**9  # far beyond any limit here; keeps huge numbers from reaching float arithmetic


def parse_duration(text: str | int) -> int:
    """Return whole seconds for `text`; raise ValueError with a reason a person can act on."""
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"expected a duration such as 3600s, 60m or 1h, got {_shown(text)}")
    if isinstance(text, int):
        return _bounded(text)
    spelled = text.strip()
    if len(spelled) > 40:
        raise ValueError(f"expected a duration such as 3600s, 60m or 1h, got {_shown(text)}")
    if _DIGITS.fullmatch(spelled):
        return _bounded(int(spelled))
    match = _DURATION.fullmatch(spelled)
    if not spelled or match is None or not any(match.groups()):
        raise ValueError(f"expected a duration such as 3600s, 60m or 1h, got {_shown(text)}")
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return _bounded(hours * _UNIT_SECONDS["h"] + minutes * _UNIT_SECONDS["m"] + seconds)


def _bounded(seconds: int) -> int:
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds}")
    if seconds > _MAX_SECONDS:
        raise ValueError(f"a duration must be shorter than {_MAX_SECONDS} seconds")
    return seconds


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def format_duration(seconds: float) -> str:
    """Print seconds as the API does (`3600s`), keeping a fraction only when there is one."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:g}s"
