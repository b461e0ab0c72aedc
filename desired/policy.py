"""Policy checks: the mistakes that take SQLite-on-Cloud-Run services down, caught before the API sees them.

Owns every check, its stable code, its severity, the failure mode it explains and the fix it proposes.
Pure: a `DesiredState` in, `Violation`s out, each with the path of the value it is about (`desired.load`
turns paths into file positions). An error blocks `apply` for its service unless that service
acknowledges the code with a reason, which turns the error into a note that still prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from desired.fields import SecretRef
from desired.findings import Severity
from desired.schema import DesiredState, ExecutionEnvironment, ServiceSpec, SqliteDialect
from desired.sqlite_url import SqliteUrl, is_server_url, is_sqlite_url, parse_sqlite_url
from desired.yamlpos import Path

__all__ = ["CHECKS", "DEFAULT_MAX_INSTANCES", "Severity", "Violation", "check_policy", "is_reserved_key"]

DEFAULT_MAX_INSTANCES = 100  # what Cloud Run runs when no maximum is set; never 0
_RESERVED_NAMESPACES = (
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
)
_NO_STREAMING = "enable-streaming-writes=false"


@dataclass(frozen=True)
class Violation:
    code: str
    severity: Severity
    path: Path
    message: str
    fix: str
    acknowledged: str = ""  # the reason given in the file, when acknowledged


# code → (severity, one-line title); the README's table of checks is this table.
CHECKS: dict[str, tuple[Severity, str]] = {
    "CR101": (Severity.ERROR, "SQLite URL without WAL, or with another journal mode"),
    "CR102": (Severity.ERROR, "SQLite URL its driver would reject"),
    "CR103": (Severity.WARNING, "driver takes no journal mode in the URL"),
    "CR104": (Severity.WARNING, "WAL on a network filesystem without EXCLUSIVE locking"),
    "CR105": (Severity.ERROR, "database env var not declared"),
    "CR106": (Severity.WARNING, "SQLite URL held in a secret cannot be checked"),
    "CR201": (Severity.ERROR, "SQLite on a Cloud Storage volume with more than one instance"),
    "CR202": (Severity.WARNING, "SQLite on a Cloud Storage volume: revisions overlap in rollouts"),
    "CR203": (Severity.WARNING, "gcsfuse streaming writes on under SQLite"),
    "CR204": (Severity.WARNING, "Cloud Storage volume on the first-generation environment"),
    "CR205": (Severity.WARNING, "SQLite on a Cloud Storage volume with CPU throttled"),
    "CR301": (Severity.ERROR, "escalation without a Cloud SQL target"),
    "CR302": (Severity.WARNING, "Cloud SQL URL written in the file"),
    "CR303": (Severity.ERROR, "Cloud SQL URL is malformed"),
    "CR401": (Severity.ERROR, "label or annotation in a namespace Cloud Run reserves"),
    "CR501": (Severity.ERROR, "acknowledges an unknown code"),
    "CR502": (Severity.WARNING, "acknowledges a check that does not fire"),
}
# The API refuses CR401 whatever the file says; CR5xx are about acknowledgements themselves.
_UNACKNOWLEDGEABLE = frozenset({"CR401", "CR501", "CR502"})


def _violation(code: str, path: Path, message: str, fix: str) -> Violation:
    return Violation(code, CHECKS[code][0], path, message, fix)


def check_policy(state: DesiredState) -> list[Violation]:
    """Every violation in the document, acknowledged ones turned into notes."""
    found: list[Violation] = []
    for index, spec in enumerate(state.services):
        here: Path = ("services", index)
        raw = [*_database_checks(spec, here), *_escalation_checks(spec, here), *_metadata_checks(spec, here)]
        found.extend(_acknowledged(spec, here, raw))
    return found


def _acknowledged(spec: ServiceSpec, here: Path, raw: list[Violation]) -> Iterator[Violation]:
    fired = {violation.code for violation in raw}
    for violation in raw:
        reason = spec.acknowledge.get(violation.code)
        yield replace(violation, severity=Severity.NOTE, acknowledged=reason) if reason else violation
    for code in spec.acknowledge:
        path = (*here, "acknowledge", code)
        if code not in CHECKS or code in _UNACKNOWLEDGEABLE:
            yield _violation(
                "CR501",
                path,
                f"{code} is not a policy check that can be acknowledged",
                "use a code from `cloudrun-reconciler validate`'s output, or remove it",
            )
        elif code not in fired:
            yield _violation(
                "CR502",
                path,
                f"{code} ({CHECKS[code][1]}) does not fire for this service",
                "remove the acknowledgement, so that it cannot hide a future finding",
            )


def _sqlite(spec: ServiceSpec, here: Path) -> tuple[SqliteUrl | None, list[Violation]]:
    """The parsed SQLite URL of the service, or why it cannot be read."""
    database = spec.database
    if database is None:
        return None, []
    path = (*here, "env", database.env)
    if database.env not in spec.env:
        return None, [
            _violation(
                "CR105",
                (*here, "database", "env"),
                f"database.env names {database.env}, which env does not declare",
                f"declare {database.env} under env, so the controller owns the URL it checks",
            )
        ]
    value = spec.env[database.env]
    if isinstance(value, SecretRef):
        return None, [
            _violation(
                "CR106",
                path,
                f"{database.env} comes from {value}: its WAL settings cannot be checked here",
                "keep the SQLite URL a plain value; put passwords in secrets",
            )
        ]
    if is_server_url(value):
        return None, [
            _violation(
                "CR102",
                path,
                f"{database.env} names a database server, not a SQLite file",
                "use a SQLite path or URL (file:/work/app.db), or remove the database section",
            )
        ]
    try:
        return parse_sqlite_url(value, database.dialect), []
    except ValueError as error:
        example = {
            SqliteDialect.MATTN: "file:/work/app.db?_journal_mode=WAL&_busy_timeout=5000",
            SqliteDialect.MODERNC: "file:/work/app.db?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)",
            SqliteDialect.PYTHON: "sqlite:////work/app.db?timeout=5",
        }[database.dialect]
        return None, [
            _violation(
                "CR102", path, f"{database.dialect} would reject it: {error}", f"write it as {example}"
            )
        ]


def _database_checks(spec: ServiceSpec, here: Path) -> Iterator[Violation]:
    url, problems = _sqlite(spec, here)
    yield from problems
    database, volume = spec.database, spec.volume
    if database is None:
        return
    if url is not None:
        yield from _journal_checks(url, database.dialect, (*here, "env", database.env))
    if volume is None:
        return
    if url is None and isinstance(spec.env.get(database.env), SecretRef):
        # The URL cannot be read, the volume can: assume the worst, and say that it is assumed.
        yield from _gcs_checks(
            spec, here, None, f"the database in {database.env} (a secret: assumed on the volume)"
        )
    elif url is not None and url.path is not None and _under(url.path, volume.mount_path):
        yield from _gcs_checks(spec, here, url, f"SQLite at {url.path}")


def _spelling(dialect: SqliteDialect, pragma: str, value: str) -> str:
    """How `dialect` spells a pragma: mattn `_journal_mode=WAL`, modernc `_pragma=journal_mode(WAL)`."""
    return f"_pragma={pragma}({value})" if dialect is SqliteDialect.MODERNC else f"_{pragma}={value}"


def _journal_checks(url: SqliteUrl, dialect: SqliteDialect, path: Path) -> Iterator[Violation]:
    if dialect is SqliteDialect.PYTHON:
        yield _violation(
            "CR103",
            path,
            "Python's sqlite3 reads no journal mode from the URL: the rollback journal "
            "is the default, and GCS FUSE streaming writes reject its rewrites",
            "run `PRAGMA journal_mode=WAL` on every connection (a SQLAlchemy connect event), "
            "then acknowledge CR103 with that reason",
        )
        return
    spelling = _spelling(dialect, "journal_mode", "WAL")
    if url.journal_mode is None:
        hint = ""
        if url.ignored:
            hint = (
                f" (modernc.org/sqlite before v1.55.0 ignores the mattn-style {', '.join(url.ignored)}; "
                "its own _pragma spelling works in every version)"
            )
        elif dialect is SqliteDialect.MATTN and "_pragma=" in url.raw:
            hint = " (the URL uses modernc's _pragma spelling, which go-sqlite3 ignores: is it modernc?)"
        yield _violation(
            "CR101",
            path,
            f"the URL leaves SQLite on its rollback journal{hint}, which is "
            "rewritten in place: on a GCS FUSE mount, streaming writes fail with OutOfOrderError",
            f"add {spelling} and {_spelling(dialect, 'busy_timeout', '5000')} to the URL",
        )
    elif url.journal_mode != "WAL":
        yield _violation(
            "CR101",
            path,
            f"journal mode {url.journal_mode} rewrites or truncates the journal in "
            "place, which GCS FUSE streaming writes reject",
            f"use {spelling}",
        )


def _gcs_checks(spec: ServiceSpec, here: Path, url: SqliteUrl | None, what: str) -> Iterator[Violation]:
    volume = spec.volume
    assert volume is not None
    scaling_path = (*here, "scaling", "maxInstances") if spec.scaling else (*here, "name")
    high = spec.scaling.max_instances if spec.scaling and spec.scaling.max_instances else None
    effective = high or DEFAULT_MAX_INSTANCES
    if effective > 1:
        said = f"maxInstances {high}" if high else f"no maxInstances (Cloud Run's default is {effective})"
        yield _violation(
            "CR201",
            scaling_path,
            f"{said} with {what} on bucket {volume.bucket}: "
            "several instances write one object with no file locking, and the last write wins",
            "set maxInstances: 1 (service level), move the database to Cloud SQL, or acknowledge CR201 "
            "with the reason the risk is accepted",
        )
    else:
        yield _violation(
            "CR202",
            scaling_path,
            "even at one instance, a rollout runs the old and the new revision "
            "side by side, and a tagged revision at 0 % traffic can start instances: each is a second "
            "writer of the same SQLite object",
            "keep rollouts all-at-once, drop stale tags, or use Cloud SQL",
        )
    if _NO_STREAMING not in (volume.mount_options or ()):
        yield _violation(
            "CR203",
            (*here, "volume", "mountOptions"),
            "gcsfuse streaming writes (on by default since "
            "v3.0.0) accept only appends to a new file; SQLite's in-place writes fail with "
            "BufferedWriteHandler.OutOfOrderError",
            f"add {_NO_STREAMING} to mountOptions",
        )
    if url is not None and spec.database is not None and url.journal_mode == "WAL":
        yield _violation(
            "CR104",
            (*here, "env", spec.database.env),
            "WAL keeps its index in shared memory (-shm), which does not work over a network filesystem; "
            "SQLite avoids it only when EXCLUSIVE locking is set before the first WAL access, and both Go "
            "drivers run the URL's journal mode before its locking mode, so the URL cannot do it",
            "on each connection run `PRAGMA locking_mode=EXCLUSIVE` before `PRAGMA journal_mode=WAL` "
            "(in code), then acknowledge CR104 with that reason; or move the database to Cloud SQL",
        )
    if spec.execution_environment is ExecutionEnvironment.GEN1:
        yield _violation(
            "CR204",
            (*here, "executionEnvironment"),
            "Cloud Storage volumes on the first generation have been seen to leave 0-byte files",
            "use executionEnvironment: gen2",
        )
    if spec.cpu_always_allocated is not True:
        yield _violation(
            "CR205",
            (*here, "cpuAlwaysAllocated") if spec.cpu_always_allocated is False else (*here, "name"),
            "with CPU throttled between requests, WAL checkpoints and background writes stall "
            "until the next request",
            "set cpuAlwaysAllocated: true",
        )


def _under(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def _escalation_checks(spec: ServiceSpec, here: Path) -> Iterator[Violation]:
    escalation = spec.escalation
    if escalation is None:
        return
    target = escalation.cloud_sql
    if target is None:
        yield _violation(
            "CR301",
            (*here, "escalation"),
            "an escalation needs somewhere to go",
            "add cloudSql: {instance: project:region:instance, databaseUrl: {secret: NAME}}",
        )
        return
    url = target.database_url
    path = (*here, "escalation", "cloudSql", "databaseUrl")
    if isinstance(url, SecretRef):
        return
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or not rest or is_sqlite_url(url):
        yield _violation(
            "CR303",
            path,
            "not a server URL such as postgresql://user@/db?host=/cloudsql/INSTANCE",
            "write the Cloud SQL URL, or better, a secret reference {secret: NAME}",
        )
    else:
        yield _violation(
            "CR302",
            path,
            "the Cloud SQL URL is written in the file, where git and every reader see it",
            "store it in Secret Manager and use {secret: NAME, version: latest}",
        )


def is_reserved_key(key: str) -> bool:
    """A label or annotation key in a namespace Cloud Run keeps for itself (`run.googleapis.com/…`)."""
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return any(prefix == ns or prefix.endswith("." + ns) for ns in _RESERVED_NAMESPACES)


def _metadata_checks(spec: ServiceSpec, here: Path) -> Iterator[Violation]:
    for section, keys in (("labels", spec.labels), ("annotations", spec.annotations)):
        for key in keys:
            if is_reserved_key(key):
                prefix = key.split("/", 1)[0]
                yield _violation(
                    "CR401",
                    (*here, section, key),
                    f"{prefix} is reserved by Cloud Run; the v2 API rejects it",
                    "drop the prefix, or use a domain of your own as the prefix",
                )
