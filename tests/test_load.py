"""Loading desired-state.yaml: valid files load whole; each invalid one names file, line, column, field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from desired import DesiredStateError, ScalingLevel, SecretRef, load_desired, load_desired_text
from desired.yamlpos import parse_yaml
from tests.conftest import ROOT

CASES = yaml.safe_load((Path(__file__).parent / "fixtures" / "invalid-desired.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_invalid_documents_report_every_finding_with_its_position(case: dict[str, Any]) -> None:
    with pytest.raises(DesiredStateError) as raised:
        load_desired_text(case["document"], "fleet.yaml")
    findings = raised.value.findings
    assert len(findings) == len(case["findings"]), [str(f) for f in findings]
    for finding, expected in zip(findings, case["findings"], strict=True):
        assert (finding.file, finding.code, finding.line, finding.column, finding.field) == (
            "fleet.yaml",
            expected["code"],
            expected["line"],
            expected["column"],
            expected["field"],
        ), str(finding)
        assert expected["reason"] in finding.message
        assert str(finding).startswith(f"fleet.yaml:{expected['line']}:{expected['column']} ")


def test_the_root_file_declares_the_reference_service_as_the_runbook_wants_it() -> None:
    state = load_desired(ROOT / "desired-state.yaml")
    (service,) = state.services
    assert (service.key.project, service.key.region, service.name) == (
        "demo-project",
        "us-central1",
        "cagent-api",
    )
    assert service.timeout == 3600
    assert service.scaling is not None
    assert (service.scaling.level, service.scaling.min_instances, service.scaling.max_instances) == (
        ScalingLevel.SERVICE,
        1,
        10,
    )
    assert service.cpu_always_allocated is True
    assert service.env == {"DATABASE_URL": "sqlite:///work/sessions.db?_journal_mode=WAL&_busy_timeout=5000"}


def test_defaults_fill_in_and_a_service_may_override_them() -> None:
    state = load_desired_text(
        "defaults: {project: demo-project, region: us-central1}\n"
        "services:\n  - name: a\n  - name: b\n    region: europe-west1\n"
    )
    assert [str(s.key) for s in state.services] == [
        "projects/demo-project/locations/us-central1/services/a",
        "projects/demo-project/locations/europe-west1/services/b",
    ]


@pytest.mark.parametrize("spelling", ["3600s", "60m", "1h", 3600])
def test_timeout_spellings_load_to_the_same_seconds(spelling: str | int) -> None:
    state = load_desired_text(
        "defaults: {project: demo-project, region: us-central1}\n"
        f"services:\n  - name: a\n    timeout: {spelling}\n"
    )
    assert state.services[0].timeout == 3600


def test_secret_references_default_to_the_latest_version() -> None:
    state = load_desired_text(
        "defaults: {project: demo-project, region: us-central1}\n"
        "services:\n  - name: a\n    env:\n      DATABASE_URL: {secret: db-url}\n"
    )
    assert state.services[0].env["DATABASE_URL"] == SecretRef(secret="db-url", version="latest")


def test_an_unreadable_file_is_a_finding_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(DesiredStateError) as raised:
        load_desired(tmp_path / "missing.yaml")
    assert "cannot read the file" in str(raised.value)


def test_anchors_and_merge_keys_resolve() -> None:
    # `x-common` is an unknown top-level key: anchors must live inside known structure.
    with pytest.raises(DesiredStateError, match="x-common"):
        load_desired_text(
            "defaults: {project: demo-project, region: us-central1}\n"
            "x-common: &common {timeout: 1h}\nservices:\n  - name: a\n"
        )
    state = load_desired_text(
        "defaults: {project: demo-project, region: us-central1}\n"
        "services:\n  - &base {name: a, timeout: 1h, cpuAlwaysAllocated: true}\n"
        "  - <<: *base\n    name: b\n    timeout: 30m\n"
    )
    assert [(s.name, s.timeout, s.cpu_always_allocated) for s in state.services] == [
        ("a", 3600, True),
        ("b", 1800, True),
    ]


def test_aliases_that_expand_without_bound_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    with pytest.raises(DesiredStateError, match="aliases are expanded"):
        load_desired_text("\n".join(lines) + "\nservices: []\n")


def test_the_checked_in_json_schema_is_up_to_date() -> None:
    from desired.jsonschema import json_schema

    checked_in = (ROOT / "desired-state.schema.json").read_text(encoding="utf-8")
    assert checked_in == json_schema(), "run: cloudrun-reconciler schema --write desired-state.schema.json"
    assert (
        (ROOT / "desired-state.yaml")
        .read_text()
        .startswith("# yaml-language-server: $schema=./desired-state.schema.json")
    )


def _schema_validator():  # type: ignore[no-untyped-def]
    import json

    import jsonschema

    return jsonschema.Draft202012Validator(json.loads((ROOT / "desired-state.schema.json").read_text()))


def test_the_root_file_passes_its_json_schema() -> None:
    document = yaml.safe_load((ROOT / "desired-state.yaml").read_text())
    assert list(_schema_validator().iter_errors(document)) == []


@pytest.mark.parametrize(
    "service",
    [
        {"name": "Bad_Name"},
        {"name": "svc", "timeout": 99999},
        {"name": "svc", "env": {"1X": "a"}},
        {"name": "svc", "volume": {"name": "v", "bucket": "b-1", "mountPath": "/proc/x"}},
        {"name": "svc", "scaling": {"level": "sideways"}},
        {"name": "svc", "timeoutt": "1h"},
    ],
)
def test_the_json_schema_refuses_what_the_loader_refuses(service: dict[str, Any]) -> None:
    document = {"defaults": {"project": "demo-project", "region": "us-central1"}, "services": [service]}
    assert list(_schema_validator().iter_errors(document)), "the editor would accept it"
    with pytest.raises(DesiredStateError):
        load_desired_text(yaml.safe_dump(document))


def test_no_finding_quotes_a_password_the_file_holds() -> None:
    """Loader messages quote offending values; a URL's password never reaches a finding."""
    document = """
defaults: {project: demo-project, region: us-central1}
services:
  - name: cagent-api
    timeout: "postgresql://app:hunter2@db/x"
    outOfBand: "mysql://root:hunter2@db/x"
    labels: {"https://u:hunter2@h": x}
    env:
      DATABASE_URL: {secret: "postgresql://u:hunter2@db/x"}
"""
    with pytest.raises(DesiredStateError) as raised:
        load_desired_text(document, "fleet.yaml")
    shown = "\n".join(f"{f}\n{f.fix}" for f in raised.value.findings)
    assert len(raised.value.findings) >= 4, shown
    assert "hunter2" not in shown
    assert "***" in shown, "the value is still named, with its password masked"


@pytest.mark.parametrize(
    "text",
    [
        "a: &x {k: {deep: [1, {e: 2}]}}\nb: *x\nc: [*x, *x]\n",
        "a: &s [x, {y: &m {z: [1, 2]}}]\nb: {<<: *m, w: *s}\nc: *m\n",
        "base: &b {p: {q: [r]}, t: 1}\nlist:\n  - <<: *b\n    t: 2\n  - <<: [*b]\n    u: *b\n",
    ],
)
def test_a_node_reached_twice_through_aliases_reads_whole_both_times(text: str) -> None:
    """The positioned reader releases the node tree as it builds; what aliases share is kept for them."""
    assert parse_yaml(text).value == yaml.safe_load(text)
