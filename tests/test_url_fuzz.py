"""The database URL parsers and the redaction of secrets under hostile input: findings, never a crash.

Properties, each on a fixed number of derandomized examples so a red build means a change, not a luckier
draw: the SQLite URL parser raises only `ValueError`, gives the same answer twice and never echoes a
value of the URL in its message; the loader's SQLite and Cloud SQL URL checks give findings, never a
traceback, and no finding shows a password the URL holds; redaction masks every password a URL parser
finds in a URL's userinfo or a secret-named parameter, wherever the URL sits in a text, is idempotent,
and leaves a text with nothing to mask alone. A bounded atheris run (coverage-guided, fixed seed and
number of inputs) checks the same of the loader, the parser and redaction, where atheris installs.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from desired import DesiredStateError, SqliteDialect, check_desired_text
from desired.redaction import MASK, redact_env_value, redact_text
from desired.sqlite_url import JOURNAL_MODES, is_server_url, is_sqlite_url, parse_sqlite_url
from tests.conftest import FUZZ

# RFC 3986 userinfo: unreserved, sub-delims, ":" and percent-escapes; people also paste raw "@" and "/".
_USERINFO = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:%"
passwords = st.text(alphabet=_USERINFO + "@/\u00a0é", min_size=1, max_size=24).map(lambda p: f"Pw{p}")
users = st.text(alphabet=string.ascii_letters + string.digits + "._-", max_size=10)
hosts = st.sampled_from(["db", "10.0.0.5:5432", "DB.Example.COM", "[::1]:3306", "", "cache:6379"])
schemes = st.sampled_from(
    ["postgres", "postgresql", "mysql", "redis", "https", "amqp", "mongodb+srv", "sqlite", "file", "x-y.z"]
)
tails = st.sampled_from(["", "/app", "/db?sslmode=require", "/x?host=/cloudsql/p:r:i", "/o#frag", "?a=1"])
words = st.sampled_from(["", "connecting to", "error:", "DATABASE_URL=", "(", "'", "\n", "\t"])
dialects = st.sampled_from(list(SqliteDialect))
hostile = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.sampled_from(
            [
                *"?&=;%#@:/()'\" \n",
                "sqlite://",
                "sqlite:///",
                "sqlite+pysqlite://",
                "file:",
                "postgres://",
                "_journal_mode=",
                "_journal=",
                "_locking_mode=",
                "_busy_timeout=",
                "_pragma=",
                "journal_mode(",
                "WAL",
                "wal",
                "EXCLUSIVE",
                "5000",
                "%zz",
                "%41",
                ":memory:",
                "_auth_pass=",
                "password=",
                "app.db",
                "\u202e",
                "\x00",
            ]
        ),
        max_size=30,
    ).map("".join),
)


def _sqlite_outcome(url: str, dialect: SqliteDialect) -> object:
    try:
        return parse_sqlite_url(url, dialect)
    except ValueError as error:
        return ("ValueError", str(error))


@FUZZ
@given(hostile, dialects)
def test_the_sqlite_url_parser_raises_only_value_errors_and_answers_the_same_twice(
    url: str, dialect: SqliteDialect
) -> None:
    first = _sqlite_outcome(url, dialect)
    assert _sqlite_outcome(url, dialect) == first
    assert isinstance(is_sqlite_url(url), bool) and isinstance(is_server_url(url), bool)
    if not isinstance(first, tuple):
        assert first.journal_mode is None or first.journal_mode in JOURNAL_MODES
        assert first.busy_timeout_ms is None or first.busy_timeout_ms >= 0


@FUZZ
@given(hostile, st.text(alphabet=string.ascii_letters + string.digits, min_size=8, max_size=16), dialects)
def test_the_sqlite_url_parser_never_echoes_a_value_of_the_url(
    prefix: str, secret: str, dialect: SqliteDialect
) -> None:
    """Its messages land in findings and logs; the URL may carry `_auth_pass`."""
    secret = f"S3{secret}"
    url = f"{prefix}{'&' if '?' in prefix else '?'}_auth_pass={secret}&_busy_timeout={secret}"
    outcome = _sqlite_outcome(url, dialect)
    if isinstance(outcome, tuple):
        assert secret not in outcome[1]


def _service(database_url: str, cloud_sql_url: str, dialect: str = "mattn") -> str:
    return (
        "defaults: {project: demo-project, region: us-central1}\n"
        "services:\n"
        "  - name: svc\n"
        f"    env: {{DATABASE_URL: {json.dumps(database_url)}}}\n"
        f"    database: {{env: DATABASE_URL, dialect: {dialect}}}\n"
        "    escalation:\n"
        "      storageErrors: {metric: logging.googleapis.com/user/e}\n"
        "      cloudSql:\n"
        "        instance: demo-project:us-central1:sessions\n"
        f"        databaseUrl: {json.dumps(cloud_sql_url)}\n"
    )


def _findings(text: str) -> tuple[str, ...]:
    try:
        checked = check_desired_text(text, "fuzz.yaml")
    except DesiredStateError as error:
        assert error.findings
        return tuple(f.describe() for f in error.findings)
    return tuple(f.describe() for f in checked.findings)


@FUZZ
@given(schemes, users, passwords, hosts, tails, hostile, st.sampled_from(["mattn", "modernc", "python"]))
def test_the_loaders_url_checks_give_findings_that_never_show_a_password(
    scheme: str, user: str, password: str, host: str, tail: str, sqlite: str, dialect: str
) -> None:
    url = f"{scheme}://{user}:{password}@{host}{tail}"
    for text in (_service(sqlite, url, dialect), _service(url, url, dialect)):
        findings = _findings(text)
        assert findings == _findings(text)  # the same file reads the same way twice
        assert all(password not in finding for finding in findings), findings
        assert all(finding.startswith("fuzz.yaml:") for finding in findings)
    codes = {finding.split()[1] for finding in _findings(_service("file:/x.db?_journal_mode=WAL", url))}
    server = "://" in url and not is_sqlite_url(url)
    assert ("CR302" in codes) == server and ("CR303" in codes) == (not server)


@FUZZ
@given(schemes, users, passwords, hosts, tails, words, words)
def test_redaction_masks_every_userinfo_password_a_url_parser_finds(
    scheme: str, user: str, password: str, host: str, tail: str, before: str, after: str
) -> None:
    url = f"{scheme}://{user}:{password}@{host}{tail}"
    found = urlsplit(url).password if "@" in urlsplit(url).netloc else None
    # `/` in a password ends the authority for a URL parser; the mask takes it all the same
    secret = found or password
    assume(secret not in url.replace(f"{user}:{password}@", "", 1))
    for text in (url, f"{before} {url} {after}", f"{before}{url}"):
        shown = redact_text(text)
        assert secret not in shown, shown
        assert MASK in shown
        assert redact_text(shown) == shown


@FUZZ
@given(schemes, users, passwords, passwords, hosts, tails, st.sampled_from(["?next=", "?a=1&to=", "#"]))
def test_redaction_masks_a_url_in_another_urls_query(
    scheme: str, user: str, outer: str, inner: str, host: str, tail: str, joint: str
) -> None:
    text = f"https://{user}:{outer}@example.com/cb{joint}{scheme}://bob:{inner}@{host}{tail}"
    assume(outer not in inner and inner not in outer)
    shown = redact_text(text)
    assert outer not in shown and inner not in shown, shown


@FUZZ
@given(schemes, users, passwords, st.sampled_from([" ", "  ", "\t"]), passwords, hosts, tails)
def test_an_env_value_that_is_a_url_is_masked_whole_even_with_a_space_in_its_password(
    scheme: str, user: str, head: str, space: str, end: str, host: str, tail: str
) -> None:
    password = f"{head}{space}{end}"
    value = f"{scheme}://{user}:{password}@{host}{tail}"
    assume(head not in value.replace(f"{user}:{password}@", "", 1))
    assume(end not in value.replace(f"{user}:{password}@", "", 1))
    shown = redact_env_value("DATABASE_URL", value)
    assert head not in shown and end not in shown, shown


@FUZZ
@given(
    st.sampled_from(["password", "PASSWORD", "passwd", "pwd", "db_pass", "x-token", "api_key", "sig"]),
    st.text(alphabet=string.ascii_letters + string.digits + "-._~!$*+,:/", min_size=4, max_size=24),
    st.sampled_from(["https://h/p?", "postgresql://db/app?user=a&", "host=db ", "x;", ""]),
    st.sampled_from(["", "&sslmode=require", " dbname=x", "#top", ";y=1"]),
)
def test_redaction_masks_secret_named_parameters(name: str, value: str, head: str, tail: str) -> None:
    value = f"V{value}"
    text = f"{head}{name}={value}{tail}"
    assume(value not in head + tail)
    shown = redact_text(text)
    assert value not in shown and f"{name}={MASK}" in shown
    assert redact_text(shown) == shown


@FUZZ
@given(st.text(alphabet=st.characters(blacklist_characters="@="), max_size=200))
def test_redaction_leaves_a_text_with_nothing_to_mask_alone(text: str) -> None:
    assert redact_text(text) == text


@FUZZ
@given(st.text(max_size=300))
def test_redaction_never_fails_and_is_idempotent(text: str) -> None:
    shown = redact_text(text)
    assert redact_text(shown) == shown
    assert redact_env_value("API_TOKEN", text) == MASK


ATHERIS_RUNS = 20_000


def test_a_bounded_atheris_run_finds_no_crash(tmp_path: Path) -> None:
    """libFuzzer from a fixed seed over a fixed number of inputs: reproducible, about 5 s."""
    pytest.importorskip("atheris", reason="atheris ships wheels for Linux x86-64 only")
    target = Path(__file__).with_name("atheris_targets.py")
    options = [f"-runs={ATHERIS_RUNS}", "-seed=1", "-max_len=512", f"-artifact_prefix={tmp_path}/"]
    result = subprocess.run(
        [sys.executable, str(target), *options], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {ATHERIS_RUNS} runs" in result.stderr
    assert not list(tmp_path.glob("crash-*"))
