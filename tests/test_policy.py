"""Policy checks, table-driven over tests/fixtures/policy-cases.yaml: each code, severity and position."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from desired import CHECKS, Severity, SqliteDialect, check_desired, check_desired_text
from desired.sqlite_url import parse_sqlite_url
from tests.conftest import ROOT

CASES = yaml.safe_load((Path(__file__).parent / "fixtures" / "policy-cases.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_each_document_produces_exactly_its_findings(case: dict[str, Any]) -> None:
    checked = check_desired_text(case["document"], "f.yaml")
    got = [
        {"code": f.code, "severity": f.severity.value, "line": f.line, "column": f.column, "field": f.field}
        for f in checked.findings
    ]
    assert got == case["findings"]
    for finding in checked.findings:
        assert finding.message and finding.fix, finding  # every finding explains itself and says what to do


def test_every_policy_check_fires_in_some_case() -> None:
    fired = {finding["code"] for case in CASES for finding in case["findings"]}
    assert set(CHECKS) <= fired


def test_an_acknowledged_error_no_longer_blocks_but_still_prints_its_reason() -> None:
    case = next(c for c in CASES if c["name"] == "acknowledged error is a note")
    checked = check_desired_text(case["document"])
    (note,) = [finding for finding in checked.findings if finding.code == "CR201"]
    assert note.severity is Severity.NOTE and note.acknowledged.startswith("three writers")
    assert "[acknowledged: three writers" in str(note)
    assert checked.blocking() == {} and not checked.has_errors


def test_an_unacknowledged_error_blocks_its_service_only() -> None:
    text = (
        "defaults: {project: demo-project, region: us-central1}\nservices:\n"
        "  - name: bad\n    env: {DATABASE_URL: 'sqlite:///x.db'}\n    database: {dialect: mattn}\n"
        "  - name: good\n"
    )
    checked = check_desired_text(text)
    assert [key.name for key in checked.blocking()] == ["bad"]
    assert [f.code for f in checked.blocking()[next(iter(checked.blocking()))]] == ["CR101"]


def test_the_root_file_keeps_max_10_and_acknowledges_it() -> None:
    checked = check_desired(ROOT / "desired-state.yaml")
    by_code = {finding.code: finding for finding in checked.findings}
    assert by_code["CR201"].severity is Severity.NOTE
    assert "runbook" in by_code["CR201"].acknowledged
    assert not checked.has_errors
    service = checked.state.services[0]
    assert service.scaling is not None and service.scaling.max_instances == 10
    assert service.volume is not None and service.escalation is not None
    assert service.escalation.cloud_sql is not None


@pytest.mark.parametrize(
    ("url", "dialect", "journal", "locking", "busy", "path"),
    [
        (
            "sqlite:///work/s.db?_journal_mode=WAL&_busy_timeout=5000",
            "mattn",
            "WAL",
            None,
            5000,
            "/work/s.db",
        ),
        (
            "file:/work/s.db?_journal=wal&_locking=EXCLUSIVE&_timeout=10",
            "mattn",
            "WAL",
            "EXCLUSIVE",
            10,
            "/work/s.db",
        ),
        ("/work/s.db?_journal_mode=DELETE", "mattn", "DELETE", None, None, "/work/s.db"),
        (
            "file:/work/s.db?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)",
            "modernc",
            "WAL",
            None,
            5000,
            "/work/s.db",
        ),
        ("file:/work/s.db?_journal_mode=WAL", "modernc", None, None, None, "/work/s.db"),
        ("sqlite:////work/s.db?timeout=2.5", "python", None, None, 2500, "/work/s.db"),
        ("sqlite:///relative.db", "python", None, None, None, "relative.db"),
        ("file::memory:?_journal_mode=WAL", "mattn", "WAL", None, None, None),
        ("file:/w/s.db?_journal=DELETE&_journal_mode=WAL", "mattn", "DELETE", None, None, "/w/s.db"),
        ("file:/w/s.db?_journal_mode=DELETE&_journal_mode=WAL", "mattn", "DELETE", None, None, "/w/s.db"),
        ("file:/w/s.db?_locking=NORMAL&_locking_mode=EXCLUSIVE", "mattn", None, "NORMAL", None, "/w/s.db"),
        ("file:/w/s.db?_auth&_auth_pass=x&_journal_mode=WAL&", "mattn", "WAL", None, None, "/w/s.db"),
        ("file:/w/s.db?_pragma=journal_mode=wal", "modernc", "WAL", None, None, "/w/s.db"),
        ("file:/w/s.db?_journal_mode=WAL&_journal=", "mattn", None, None, None, "/w/s.db"),
        (
            "file:/w/s.db?_pragma=journal_mode=DELETE&_pragma=journal_mode(WAL)",
            "modernc",
            "DELETE",
            None,
            None,
            "/w/s.db",
        ),
        (
            "file:/w/s.db?_pragma=journal_mode(DELETE)&_pragma=journal_mode=WAL",
            "modernc",
            "WAL",
            None,
            None,
            "/w/s.db",
        ),
    ],
)
def test_sqlite_urls_are_read_as_their_driver_reads_them(
    url: str, dialect: str, journal: str | None, locking: str | None, busy: int | None, path: str | None
) -> None:
    parsed = parse_sqlite_url(url, SqliteDialect(dialect))
    assert (parsed.journal_mode, parsed.locking_mode, parsed.busy_timeout_ms, parsed.path) == (
        journal,
        locking,
        busy,
        path,
    )


@pytest.mark.parametrize(
    ("url", "dialect", "reason"),
    [
        ("sqlite:///x.db?_journal_mode=WALL", "mattn", "the journal mode is not one of"),
        ("sqlite:///x.db?_locking_mode=SHARED", "mattn", "locking mode"),
        ("sqlite:///x.db?_busy_timeout=soon", "mattn", "busy timeout"),
        ("file:x.db?_pragma=journal_mode", "modernc", r"neither name\(value\) nor name=value"),
        ("sqlite://", "mattn", "names no database file"),
        ("file:/w/s.db?_journal_mode=WAL&_txlock=immediate;", "mattn", "refuses"),
        ("file:/w/s.db?_journal_mode=WAL&x=%zz", "mattn", "two hex digits"),
        ("postgres://u@h/db", "python", "a SQLAlchemy SQLite URL"),
    ],
)
def test_malformed_sqlite_urls_are_errors_with_a_reason(url: str, dialect: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_sqlite_url(url, SqliteDialect(dialect))


def test_no_finding_echoes_a_password_from_the_url() -> None:
    text = (
        "defaults: {project: demo-project, region: us-central1}\nservices:\n  - name: svc\n"
        "    env: {DATABASE_URL: 'file:/w/s.db?_auth_pass=Hunter2Secret&_journal_mode=WALL'}\n"
        "    database: {dialect: mattn}\n"
    )
    (finding,) = check_desired_text(text).findings
    assert finding.code == "CR102" and "Hunter2Secret" not in str(finding) + finding.fix
