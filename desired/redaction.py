"""Keeping secrets out of everything the project prints, logs, reports or exports.

Owns one rule, used by findings, the plan renderer, error translation, the log processors and `export`.
Masked with `***`: the password in a URL's userinfo (`scheme://user:PASSWORD@host`, `/` allowed in it), a
userinfo that is a bare token (`https://TOKEN@github.com`), the password of scheme-less DSNs
(`user:PASSWORD@tcp(host)/db`, `scott/PASSWORD@host`), secret-named query or key=value parameters
(`?password=`, `&key=`, `_auth_pass=`, `password=` in libpq strings), and the whole value of an env var
whose name says it is a secret. Every URL of a word counts, the one in another's query too. Free text is
read word by word at ASCII whitespace (a no-break space is part of a word); an env value that is a URL
is read as one URL, so a space in its password does not split it. Everything else is kept byte for byte.
Every pattern runs in linear time: values of 32 KiB are redacted on every plan. Secret Manager
references are shown by name and version.
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
# Scheme-less DSNs at the start of a word, or after a quote or bracket: Go's `user:pass@tcp(host)/db`,
# Oracle's `user/pass@host`.
_BARE_DSN = re.compile(
    r"(?P<head>(?:^|(?<=[\s'\"`(\[{=,]))[\w.-]{1,64}[:/])(?P<secret>[^\s@:/]{1,200})(?P<tail>@[\w.-]*[(/:])"
)
_TOKEN_LENGTH = 20  # a userinfo this long with no `:` is a token, not a user name
# Split at ASCII whitespace keeping it, so joining gives the text back; Unicode spaces stay in the word.
_WORDS = re.compile(r"([ \t\n\r\f\v]+)")
_AUTHORITY_END = re.compile(r"[?#]")  # the userinfo of a URL cannot lie past its query or fragment
_URL_VALUE = re.compile(r"[ \t]*[A-Za-z][A-Za-z0-9+.-]{0,30}://")


def redact_text(text: str) -> str:
    """`text` with every credential this module knows how to find replaced by `***`."""
    text = _mask_userinfo(text)
    text = _BARE_DSN.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    return _PARAM_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)


def _mask_userinfo(text: str) -> str:
    """Mask the userinfo of `scheme://userinfo@host` in each whitespace-separated word, in one pass."""
    return "".join(_mask_word(word) for word in _WORDS.split(text))


def _mask_word(word: str) -> str:
    """Mask the userinfo of every URL in `word`: after one URL's authority, the next is looked for in its
    query and fragment (`?next=postgres://u:pw@db`). Each stretch is read once: linear time."""
    shown, done = [], 0
    while (match := _SCHEME.search(word, done)) is not None:
        start = match.end()
        end = _AUTHORITY_END.search(word, start)
        cut = end.start() if end else len(word)
        at = word.rfind("@", start, cut)
        shown.append(word[done:start])
        if at >= 0:
            user, colon, _ = word[start:at].partition(":")
            if colon:
                shown.append(f"{user}:{MASK}")
            elif at - start >= _TOKEN_LENGTH:
                shown.append(MASK)
            else:
                shown.append(word[start:at])
            start = at
        shown.append(word[start : cut + 1])
        done = cut + 1
    shown.append(word[done:])
    return "".join(shown)


def redact_env_value(name: str, value: EnvValue | None) -> str:
    """The printable form of one env var's value."""
    if value is None:
        return "unset"
    if isinstance(value, SecretRef):
        return str(value)
    if _SECRET_NAME.search(name):
        return MASK
    if _URL_VALUE.match(value):  # one URL, whatever it holds: a space in its password splits nothing
        value = _mask_word(value)
    return redact_text(value)
