"""Secrets never print: credentials in URLs and connection strings are masked, the rest kept byte for byte."""

import pytest

from desired import SecretRef
from desired.redaction import redact_env_value, redact_text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgres://app:hunter2@10.0.0.5:5432/sessions", "postgres://app:***@10.0.0.5:5432/sessions"),
        ("postgresql://app:p%40ss@/db?host=/cloudsql/p:r:i", "postgresql://app:***@/db?host=/cloudsql/p:r:i"),
        ("postgresql://app:pa/ss@db/x", "postgresql://app:***@db/x"),
        ("postgresql://app:p@ss@DB.Example.COM/x", "postgresql://app:***@DB.Example.COM/x"),
        (
            "postgresql://db/app?user=app&password=hunter2&sslmode=require",
            "postgresql://db/app?user=app&password=***&sslmode=require",
        ),
        ("host=db user=app password=hunter2 dbname=x", "host=db user=app password=*** dbname=x"),
        ("host=db password='two words' dbname=x", "host=db password=*** dbname=x"),
        (
            "https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/org/repo.git",
            "https://***@github.com/org/repo.git",
        ),
        ("redis://:OldRedisPw@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "https://storage.example.com/o?X-Goog-Signature=abc123&x=1",
            "https://storage.example.com/o?X-Goog-Signature=***&x=1",
        ),
        ("https://example.com/o?sig=abc123&x=1", "https://example.com/o?sig=***&x=1"),
        ("sqlite:///work/sessions.db?_journal_mode=WAL", "sqlite:///work/sessions.db?_journal_mode=WAL"),
        ("mysql://root@localhost/db", "mysql://root@localhost/db"),
        ("contact ops@example.com about x", "contact ops@example.com about x"),
        # a URL in another's query, and a no-break space inside a password (found by fuzzing)
        ("https://h/x?target=postgres://u:pw@db", "https://h/x?target=postgres://u:***@db"),
        ("postgres://u:p@h/db?next=https://a:b@c#f", "postgres://u:***@h/db?next=https://a:***@c#f"),
        ("postgres://u:pw\u00a0x@h", "postgres://u:***@h"),
        ("see\u00a0postgres://u:pw@h", "see\u00a0postgres://u:***@h"),
    ],
)
def test_credentials_are_masked_and_everything_else_kept(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def test_passwords_inside_free_text_are_masked() -> None:
    text = "INVALID_ARGUMENT: bad value postgres://u:s3cr3t@db/x for DATABASE_URL"
    assert "s3cr3t" not in redact_text(text)
    assert "postgres://u:***@db/x" in redact_text(text)


@pytest.mark.parametrize(
    "name", ["DB_PASSWORD", "DB_PASS", "MYSQL_PWD", "API_TOKEN", "SIGNING_KEY", "STRIPE_SECRET", "GH_AUTH"]
)
def test_values_named_like_secrets_are_masked_entirely(name: str) -> None:
    assert redact_env_value(name, "sk_live_value") == "***"


def test_secret_references_show_name_and_version_only() -> None:
    assert redact_env_value("DATABASE_URL", SecretRef(secret="db-url", version="3")) == "secret:db-url:3"


def test_an_env_value_that_is_one_url_is_masked_whole_with_a_space_in_its_password() -> None:
    shown = redact_env_value("DATABASE_URL", "postgresql://app:pa ss@/db?host=/cloudsql/p:r:i")
    assert shown == "postgresql://app:***@/db?host=/cloudsql/p:r:i"
    assert redact_env_value("NOTE", "mail ops@example.com: a:b") == "mail ops@example.com: a:b"


def test_unset_is_shown_as_unset() -> None:
    assert redact_env_value("X", None) == "unset"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "app:Hunter2Secret@tcp(10.0.0.5:3306)/orders?parseTime=true",
            "app:***@tcp(10.0.0.5:3306)/orders?parseTime=true",
        ),
        ("scott/Hunter2Secret@db.example.com:1521/orcl", "scott/***@db.example.com:1521/orcl"),
        ("version: 'app:Hunter2@tcp(db)/x' is not valid", "version: 'app:***@tcp(db)/x' is not valid"),
        ('labels["app:Hunter2@tcp(db)/x"]', 'labels["app:***@tcp(db)/x"]'),
        (
            "https://maps.googleapis.com/maps/api/geocode/json?key=AIzaSyHunter2",
            "https://maps.googleapis.com/maps/api/geocode/json?key=***",
        ),
        ("https://x.firebaseio.com/a.json?auth=Hunter2", "https://x.firebaseio.com/a.json?auth=***"),
        (
            "file:/work/s.db?_auth&_auth_user=admin&_auth_pass=Hunter2&_journal_mode=WAL",
            "file:/work/s.db?_auth&_auth_user=admin&_auth_pass=***&_journal_mode=WAL",
        ),
        ("https://host:8443/path?x=1", "https://host:8443/path?x=1"),
    ],
)
def test_more_credential_spellings_are_masked(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def test_hostile_values_are_read_as_credentials_only_where_they_have_that_shape() -> None:
    """Shapes that made the old patterns backtrack (their cost is in benchmarks/bench_redact.py)."""
    assert redact_text("a://" * 8000) == "a://" * 8000
    assert redact_text("x:y@" * 8000) == "x:***@" + "x:y@" * 7999
    assert redact_text(" a:b@c(" * 4000) == " a:***@c(" * 4000
    assert redact_text("?key=" * 6000 + "a") == "?key=***"
