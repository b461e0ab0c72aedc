"""The loader under hostile input: only validation findings, never a crash or a traceback. A fixed
number of derandomized examples (`tests.conftest.FUZZ`); FUZZ_EXAMPLES=N for a longer run."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from desired import DesiredStateError, check_desired_text
from tests.conftest import FUZZ

KEYS = [
    "apiVersion",
    "controller",
    "defaults",
    "services",
    "name",
    "project",
    "region",
    "timeout",
    "scaling",
    "level",
    "minInstances",
    "maxInstances",
    "cpuAlwaysAllocated",
    "env",
    "DATABASE_URL",
    "volume",
    "bucket",
    "mountPath",
    "mountOptions",
    "database",
    "dialect",
    "escalation",
    "cloudSql",
    "databaseUrl",
    "secret",
    "version",
    "acknowledge",
    "CR201",
    "labels",
    "annotations",
    "interval",
    "window",
    "contention",
    "metric",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "3600s",
            "1h",
            "gen2",
            "service",
            "mattn",
            "sqlite:///data/x.db?_journal_mode=WAL",
            "demo-project",
            "us-central1",
            "\u202e\u0000x",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
            "1e400",
            "0x10",
        ]
    ),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers()), children, max_size=6
        ),
    ),
    max_leaves=40,
)


def _check(text: str) -> None:
    try:
        check_desired_text(text, "fuzz.yaml")
    except DesiredStateError as error:
        assert error.findings
        for finding in error.findings:
            assert finding.line >= 1 and finding.column >= 1 and finding.code.startswith("CR")
            assert str(finding).startswith("fuzz.yaml:")


@FUZZ
@given(documents)
def test_random_structures_give_findings_never_crashes(document: Any) -> None:
    _check(yaml.safe_dump(document, allow_unicode=True))


tokens = st.sampled_from(
    [*"abc :-[]{}&*!|>'\"#\n\t ,?%@`", *KEYS[:6], "<<", "---", "\ufeff", "!!python/object"]
)


@FUZZ
@given(st.lists(tokens, max_size=60).map("".join))
def test_random_text_gives_findings_never_crashes(text: str) -> None:
    _check(text)


@FUZZ
@given(st.sampled_from(KEYS), st.sampled_from(KEYS), scalars, scalars)
def test_anchors_aliases_and_duplicate_keys(first: str, second: str, a: Any, b: Any) -> None:
    body = yaml.safe_dump({"x": a}).strip().replace("x: ", "", 1)
    text = (
        "defaults: &d {project: demo-project, region: us-central1}\n"
        f"services:\n  - &s\n    name: svc\n    {first}: {body}\n  - <<: *s\n    {first}: *d\n"
        f"    {second}: {yaml.safe_dump({'y': b}).strip().replace('y: ', '', 1)}\n"
    )
    _check(text)
    if first == second:  # the same key twice in one mapping is refused, never last-one-wins
        try:
            check_desired_text(text)
        except DesiredStateError as error:
            assert "CR004" in [f.code for f in error.findings]
        else:
            raise AssertionError("a duplicate key was accepted")
