"""Keeping secrets out of everything the controller prints, logs or reports.

Owns one rule, used by the plan renderer, the error translation and the log processors alike. Masked
with `***`: the password in a URL's userinfo (`scheme://user:PASSWORD@host`, a password may hold `/`),
a userinfo that is a bare token (`https://TOKEN@github.com`), secret-named query parameters
(`?password=…`, `&token=…`), `password=…` in key=value connection strings, and the whole value of an env
var whose name says it is a secret. Everything else is kept byte for byte. Secret Manager references are
shown by name and version; their values are never read.
"""

from __future__ import annotations

import re

from desired import EnvValue, SecretRef

__all__ = ["MASK", "redact_env_value", "redact_text"]

MASK = "***"
_SECRET_NAME = re.compile(r"PASS|PWD|SECRET|TOKEN|KEY|CREDENTIAL|SIGNATURE|AUTH", re.IGNORECASE)
_SECRET_PARAM = r"(?:password|passwd|pwd|pass|secret|token|access_token|api_?key|sslpassword|sig|signature)"
# `password=…` as a query parameter or in a libpq-style key=value string.
_PARAM_VALUE = re.compile(
    rf"(?P<head>(?:^|[?&;\s])(?i:[\w.-]*{_SECRET_PARAM})\s*=\s*)(?P<value>'[^']*'|[^&;\s#]+)"
)
# scheme:// then the userinfo up to the last `@` that is followed by a host.
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s@]*(?:@[^\s@/?#]*)*?)@(?=[^\s@/?#]*(?:[/?#\s]|$))"
)
_TOKEN_LENGTH = 20  # a userinfo this long with no `:` is a token, not a user name


def _userinfo(match: re.Match[str]) -> str:
    userinfo = match["userinfo"]
    user, sep, _ = userinfo.partition(":")
    if sep:
        return f"{match['scheme']}{user}:{MASK}@"
    if len(userinfo) >= _TOKEN_LENGTH:
        return f"{match['scheme']}{MASK}@"
    return match[0]


def redact_text(text: str) -> str:
    """`text` with every credential this module knows how to find replaced by `***`."""
    text = _USERINFO.sub(_userinfo, text)
    return _PARAM_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)


def redact_env_value(name: str, value: EnvValue | None) -> str:
    """The printable form of one env var's value."""
    if value is None:
        return "(unset)"
    if isinstance(value, SecretRef):
        return str(value)
    if _SECRET_NAME.search(name):
        return MASK
    return redact_text(value)
