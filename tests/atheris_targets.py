"""Coverage-guided fuzzing with atheris (libFuzzer) of the desired-file loader, the SQLite URL parser and
redaction: a bounded run, started by tests/test_url_fuzz.py with a fixed seed and number of inputs.

Run by hand for longer: .venv/bin/python tests/atheris_targets.py -runs=200000 -seed=1 -max_len=512
Each input is text. The properties are those the hypothesis tests state: the loader gives findings
(`DesiredStateError`) or a state, never another exception; `parse_sqlite_url` raises only `ValueError`;
redaction is idempotent, and masks a password built into a URL from the same input wherever it sits.
Any other exception is a crash: libFuzzer prints it and exits non-zero.
"""

from __future__ import annotations

import contextlib
import string
import sys

import atheris

with atheris.instrument_imports(include=["desired"]):
    from desired import DesiredStateError, SqliteDialect, check_desired_text
    from desired.redaction import redact_env_value, redact_text
    from desired.sqlite_url import is_server_url, is_sqlite_url, parse_sqlite_url

_USERINFO = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:%@/\u00a0")
_TEMPLATE = (
    "defaults: {{project: demo-project, region: us-central1}}\n"
    "services:\n  - name: svc\n    env: {{DATABASE_URL: {url}}}\n"
    "    database: {{env: DATABASE_URL, dialect: {dialect}}}\n"
)


def one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    mode = provider.ConsumeIntInRange(0, 2)
    text = provider.ConsumeUnicodeNoSurrogates(provider.ConsumeIntInRange(0, 300))
    if mode == 0:  # the loader, on the text as a whole file
        try:
            check_desired_text(text, "fuzz.yaml")
        except DesiredStateError as error:
            assert error.findings and all(str(f).startswith("fuzz.yaml:") for f in error.findings)
        return
    dialect = list(SqliteDialect)[provider.ConsumeIntInRange(0, len(SqliteDialect) - 1)]
    with contextlib.suppress(ValueError):  # what the driver would refuse; anything else is a crash
        parse_sqlite_url(text, dialect)
    is_sqlite_url(text), is_server_url(text)
    shown = redact_text(text)
    assert redact_text(shown) == shown, "redaction is not idempotent"
    password = "Pw" + "".join(c for c in provider.ConsumeUnicodeNoSurrogates(24) if c in _USERINFO)
    url = f"postgresql://app:{password}@db/x"
    if password in text:
        return
    for around in (f"{text} {url}", f"{url}?next={url}", f"{text}\t{url}#{text}"):
        assert password not in redact_text(around), "a URL's password was shown"
    assert password not in redact_env_value("DATABASE_URL", url)
    if mode == 2:  # the loader's SQLite checks on the URL, whose findings must not show it either
        quoted = '"' + url.replace("\\", "\\\\").replace('"', '\\"') + '"'
        try:
            checked = check_desired_text(_TEMPLATE.format(url=quoted, dialect=dialect.value), "fuzz.yaml")
            findings = [f.describe() for f in checked.findings]
        except DesiredStateError as error:
            findings = [f.describe() for f in error.findings]
        assert all(password not in finding for finding in findings), "a finding shows a password"


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
