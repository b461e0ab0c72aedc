"""Keeping secrets out of everything the project prints, logs, reports or exports.

Owns one rule, used by findings, the plan renderer, error translation, the log processors and `export`.
Masked with `***`: the password in a URL's userinfo (`scheme://user:PASSWORD@host`, `/` allowed in it), a
userinfo that is a bare token (`https://TOKEN@github.com`), the password of scheme-less DSNs
(`user:PASSWORD@tcp(host)/db`, `scott/PASSWORD@host`), secret-named query or key=value parameters
(`?password=`, `&key=`, `_auth_pass=`, `password=` in libpq strings), and the whole value of an env var
whose name says it is a secret. Everything else is kept byte for byte. Every pattern runs in linear time:
values of 32 KiB are redacted on every plan. Secret Manager references are shown by name and version.
"""

from __future__ import annotations

import re

from desired.fields import EnvValue, SecretRef

__all__ = ["MASK", "redact_env_value", "redact_text"]

MASK = "***"
_SECRET_NAME = re.compile(r"PASS|PWD|SECRET|TOKEN|KEY|CREDENTIAL|SIGNATURE|AUTH", re.IGNORECASE)
_SECRET_PARAM = r"(?:password|passwd|pwd|pass|secret|token|key|auth|sig|signature)"
# `…password=value` as a query parameter or in a key=value connection string; the name may carry a prefix.
_PARAM_VALUE = re.compile(
    rf"(?P<head>(?:^|[?&;\s])(?i:[\w.-]{{0,40}}?{_SECRET_PARAM})[ \t]*=[ \t]*)"
    r"(?P<value>'[^']*'|[^&;\s#']+)"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}://")
# Scheme-less DSNs at the start of a word: Go's `user:pass@tcp(host)/db`, Oracle's `user/pass@host`.
_BARE_DSN = re.compile(
    r"(?P<head>(?:^|(?<=\s))[\w.-]{1,64}[:/])(?P<secret>[^\s@:/]{1,200})(?P<tail>@[\w.-]*[(/:])"
)
_TOKEN_LENGTH = 20  # a userinfo this long with no `:` is a token, not a user name
_WORDS = re.compile(r"(\s+)")  # split keeping the whitespace, so joining gives the text back


def redact_text(text: str) -> str:
    """`text` with every credential this module knows how to find replaced by `***`."""
    text = _mask_userinfo(text)
    text = _BARE_DSN.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    return _PARAM_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)


def _mask_userinfo(text: str) -> str:
    """Mask the userinfo of `scheme://userinfo@host` in each whitespace-separated word, in one pass."""
    return "".join(_mask_word(word) for word in _WORDS.split(text))


def _mask_word(word: str) -> str:
    match = _SCHEME.search(word)
    if match is None:
        return word
    start = match.end()
    rest = word[start:]
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, cut)
    if at < 0:
        return word
    user, colon, _ = rest[:at].partition(":")
    if colon:
        return f"{word[:start]}{user}:{MASK}{rest[at:]}"
    if at >= _TOKEN_LENGTH:
        return f"{word[:start]}{MASK}{rest[at:]}"
    return word


def redact_env_value(name: str, value: EnvValue | None) -> str:
    """The printable form of one env var's value."""
    if value is None:
        return "unset"
    if isinstance(value, SecretRef):
        return str(value)
    if _SECRET_NAME.search(name):
        return MASK
    return redact_text(value)
