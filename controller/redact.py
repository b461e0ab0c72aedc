"""Keeping secrets out of everything the controller prints, logs or reports.

Owns one rule, used by the plan renderer and the log processors alike: a password in a URL becomes
`***`, and a plain env value whose name says it is a secret is shown as `***`. Secret Manager
references are shown by name and version; their values are never read.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from desired import EnvValue, SecretRef

__all__ = ["MASK", "redact_env_value", "redact_text", "redact_url"]

MASK = "***"
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.IGNORECASE)
# scheme://user:password@host — also inside longer text such as an error message
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<password>[^\s@/]+)(?P<tail>@)")


def redact_url(value: str) -> str:
    """`postgres://app:hunter2@db/x` → `postgres://app:***@db/x`; other text is returned as is."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return redact_text(value)
    if parts.password is None:
        return redact_text(value)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}{port}"))


def redact_text(text: str) -> str:
    """Mask every `scheme://user:password@` found anywhere in `text`."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)


def redact_env_value(name: str, value: EnvValue | None) -> str:
    """The printable form of one env var's value."""
    if value is None:
        return "(unset)"
    if isinstance(value, SecretRef):
        return str(value)
    if _SECRET_NAME.search(name):
        return MASK
    return redact_url(value)
