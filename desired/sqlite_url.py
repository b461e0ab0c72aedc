"""Reading a SQLite connection string the way its driver does, so a WAL check understands each spelling.

Owns three dialects: go-sqlite3 (mattn: `_journal_mode=WAL` or `_journal=WAL`, `_locking_mode`/`_locking`,
`_busy_timeout`/`_timeout`), modernc.org/sqlite (`_pragma=journal_mode(WAL)`, which before v1.55.0 ignored
mattn's keys silently), and Python's sqlite3 behind SQLAlchemy (`sqlite:////abs/path.db`, no URL parameter
for the journal mode at all). Pure: text in, `SqliteUrl` out, `ValueError` with a reason for malformed input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, unquote

from desired.schema import SqliteDialect

__all__ = ["JOURNAL_MODES", "SqliteUrl", "is_server_url", "is_sqlite_url", "parse_sqlite_url"]

JOURNAL_MODES = frozenset({"DELETE", "TRUNCATE", "PERSIST", "MEMORY", "WAL", "OFF"})
_LOCKING_MODES = frozenset({"NORMAL", "EXCLUSIVE"})
_MATTN_KEYS = {
    "_journal_mode": "journal_mode",
    "_journal": "journal_mode",
    "_locking_mode": "locking_mode",
    "_locking": "locking_mode",
    "_busy_timeout": "busy_timeout",
    "_timeout": "busy_timeout",
}
_PRAGMA = re.compile(r"([a-z_]+)\((.*)\)", re.IGNORECASE)
_PRAGMA_ASSIGN = re.compile(r"([a-z_]+)\s*=\s*(.*)", re.IGNORECASE)
_MATTN_ALIASES = (
    ("_journal_mode", "_journal", "journal_mode"),
    ("_locking_mode", "_locking", "locking_mode"),
    ("_busy_timeout", "_timeout", "busy_timeout"),
)
_DIGITS = re.compile(r"[0-9]+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEMES = ("sqlite3://", "sqlite://", "file:", "sqlite+pysqlite://", "sqlite+aiosqlite://")


@dataclass(frozen=True)
class SqliteUrl:
    """What the driver will do with the URL. `path` is None for an in-memory database."""

    path: str | None
    raw: str = ""
    journal_mode: str | None = None
    locking_mode: str | None = None
    busy_timeout_ms: int | None = None
    ignored: tuple[str, ...] = ()  # keys this dialect does not read


def is_server_url(value: str) -> bool:
    """Whether `value` names a database server (postgres://, mysql://, …), which SQLite cannot open."""
    head = value.lower().split("?", 1)[0]
    return "://" in head and not head.startswith(_SCHEMES)


def is_sqlite_url(value: str) -> bool:
    """Whether `value` names a SQLite database rather than a server (postgres://, mysql://, …)."""
    lowered = value.lower()
    return lowered.startswith(_SCHEMES) or (
        ("://" not in lowered) and lowered.split("?")[0].endswith((".db", ".sqlite", ".sqlite3"))
    )


def parse_sqlite_url(url: str, dialect: SqliteDialect) -> SqliteUrl:
    """Read `url` as `dialect`'s driver would; raise ValueError for what it would reject. Error messages
    never echo the URL or its values: it may carry a password (`_auth_pass`)."""
    location, _, query = url.partition("?")
    if dialect is not SqliteDialect.PYTHON:
        _go_query_check(query)
    # Go's url.ParseQuery, as both Go drivers use it: valueless flags (`_auth`) and stray `&` are fine.
    params = parse_qsl(query, keep_blank_values=True)
    if dialect is SqliteDialect.PYTHON:
        return replace(_python(location, params), raw=url)
    path = _driver_path(location)
    if dialect is SqliteDialect.MODERNC:
        settings, ignored = _modernc(params)
    else:
        settings, ignored = _mattn(params), ()
    return replace(_settled(path, settings, ignored), raw=url)


def _go_query_check(query: str) -> None:
    """What Go's url.ParseQuery refuses, so that the driver never opens the database."""
    if ";" in query:
        raise ValueError("the query holds a ';', which Go's URL parser refuses: the driver will not open it")
    if _BAD_ESCAPE.search(query):
        raise ValueError("the query holds a % not followed by two hex digits, which Go's URL parser refuses")


def _mattn(params: list[tuple[str, str]]) -> dict[str, str]:
    """go-sqlite3: the first value of each key counts (`params.Get`), and the short alias, when present at
    all, is the key read: `_journal` over `_journal_mode`, `_locking` over `_locking_mode`, `_timeout`
    over `_busy_timeout`; an empty value leaves the driver's default."""
    first: dict[str, str] = {}
    for key, value in params:
        first.setdefault(key, value)
    settings: dict[str, str] = {}
    for long, short, setting in _MATTN_ALIASES:
        value = first.get(short if short in first else long, "")
        if value:
            settings[setting] = value
    return settings


def _modernc(params: list[tuple[str, str]]) -> tuple[dict[str, str], tuple[str, ...]]:
    """modernc.org/sqlite: each `_pragma=name(value)` (or `name=value`, run as `PRAGMA name=value`); the
    driver sorts the pragma texts and runs them in that order, so the last one per name wins and
    `journal_mode` always runs before `locking_mode`."""
    settings: dict[str, str] = {}
    for value in sorted(value for key, value in params if key == "_pragma"):
        match = _PRAGMA.fullmatch(value) or _PRAGMA_ASSIGN.fullmatch(value)
        if not match:
            raise ValueError("a _pragma value is neither name(value) nor name=value")
        settings[match[1].lower()] = match[2]
    ignored = tuple(dict.fromkeys(key for key, _ in params if key in _MATTN_KEYS))
    return settings, ignored


def _driver_path(location: str) -> str | None:
    lowered = location.lower()
    for scheme in _SCHEMES:
        if lowered.startswith(scheme):
            location = location[len(scheme) :]
            break
    if location.startswith("//"):  # an empty authority: sqlite:///abs/path, file:///abs/path
        location = location[2:]
    location = unquote(location)
    if not location:
        raise ValueError("the URL names no database file")
    return None if location == ":memory:" else location


def _python(location: str, params: list[tuple[str, str]]) -> SqliteUrl:
    scheme, sep, rest = location.partition(":///")
    if not sep or not scheme.lower().startswith("sqlite"):
        if location.lower() in ("sqlite://", "sqlite+pysqlite://"):
            return SqliteUrl(path=None)
        raise ValueError("a SQLAlchemy SQLite URL is sqlite:///relative.db or sqlite:////absolute/path.db")
    if not rest:
        return SqliteUrl(path=None)
    timeout = dict(params).get("timeout")
    try:
        busy = None if timeout is None else int(float(timeout) * 1000)
    except ValueError:
        raise ValueError("timeout is not a number of seconds") from None
    return SqliteUrl(path=unquote(rest), busy_timeout_ms=busy)


def _settled(path: str | None, settings: dict[str, str], ignored: tuple[str, ...]) -> SqliteUrl:
    journal = settings.get("journal_mode")
    if journal is not None and journal.upper() not in JOURNAL_MODES:
        raise ValueError(f"the journal mode is not one of {', '.join(sorted(JOURNAL_MODES))}")
    locking = settings.get("locking_mode")
    if locking is not None and locking.upper() not in _LOCKING_MODES:
        raise ValueError("the locking mode is not NORMAL or EXCLUSIVE")
    busy = settings.get("busy_timeout")
    if busy is not None and not _DIGITS.fullmatch(busy):
        raise ValueError("the busy timeout is not a whole number of milliseconds")
    return SqliteUrl(
        path=path,
        journal_mode=journal.upper() if journal else None,
        locking_mode=locking.upper() if locking else None,
        busy_timeout_ms=int(busy) if busy else None,
        ignored=ignored,
    )
