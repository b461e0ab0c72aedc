"""Secrets never print: URL passwords and secret-named values are masked, references shown by name."""

import pytest

from controller.redact import redact_env_value, redact_text, redact_url
from desired import SecretRef


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgres://app:hunter2@10.0.0.5:5432/sessions", "postgres://app:***@10.0.0.5:5432/sessions"),
        ("postgresql://app:p%40ss@/db?host=/cloudsql/p:r:i", "postgresql://app:***@/db?host=/cloudsql/p:r:i"),
        ("sqlite:///work/sessions.db?_journal_mode=WAL", "sqlite:///work/sessions.db?_journal_mode=WAL"),
        ("mysql://root@localhost/db", "mysql://root@localhost/db"),
    ],
)
def test_url_passwords_are_masked_and_the_rest_is_kept(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_passwords_inside_free_text_are_masked() -> None:
    text = "INVALID_ARGUMENT: bad value postgres://u:s3cr3t@db/x for DATABASE_URL"
    assert "s3cr3t" not in redact_text(text)
    assert "postgres://u:***@db/x" in redact_text(text)


def test_values_named_like_secrets_are_masked_entirely() -> None:
    assert redact_env_value("DB_PASSWORD", "hunter2") == "***"
    assert redact_env_value("API_TOKEN", "abc") == "***"


def test_secret_references_show_name_and_version_only() -> None:
    assert redact_env_value("DATABASE_URL", SecretRef(secret="db-url", version="3")) == "secret:db-url:3"


def test_unset_is_shown_as_unset() -> None:
    assert redact_env_value("X", None) == "(unset)"
