"""`export`: live services back into a desired-state document that plans clean and says what it found."""

from __future__ import annotations

import dataclasses

from controller.cloudrun import CloudRunServices
from controller.export import export_document
from controller.model import GcsVolume
from controller.reconcile import reconcile
from desired import SecretRef, ServiceKey, check_desired_text
from emulator import Emulator


def _reference(gateway: CloudRunServices):  # type: ignore[no-untyped-def]
    key = ServiceKey(project="demo-project", region="us-central1", name="cagent-api")
    return gateway.get_service(key).observed


def test_exporting_then_planning_shows_no_drift(reference: Emulator, gateway: CloudRunServices) -> None:
    text = export_document([_reference(gateway)])
    checked = check_desired_text(text, "exported.yaml")
    plan = reconcile(checked.state, gateway, dry_run=True, blocked={}).plan
    assert plan.exit_code == 0, plan
    assert reference.store.calls["UpdateService"] == 0


def test_the_export_holds_the_managed_knobs_as_live(reference: Emulator, gateway: CloudRunServices) -> None:
    state = check_desired_text(export_document([_reference(gateway)])).state
    (service,) = state.services
    assert (service.timeout, service.cpu_always_allocated, service.startup_cpu_boost) == (300, False, True)
    assert service.scaling is not None and service.scaling.max_instances == 100
    assert service.env == {"DATABASE_URL": "sqlite:///work/sessions.db", "LOG_LEVEL": "info"}
    assert service.volume is not None and (service.volume.bucket, service.volume.mount_path) == (
        "demo-project-cagent-sessions",
        "/work",
    )
    assert service.database is not None and service.database.dialect.value == "mattn"


def test_policy_findings_become_comments_above_their_lines(
    reference: Emulator, gateway: CloudRunServices
) -> None:
    lines = export_document([_reference(gateway)]).splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("DATABASE_URL:"))
    block = []
    while lines[at - 1 - len(block)].strip().startswith("#"):
        block.insert(0, lines[at - 1 - len(block)].strip())
    assert block[0].startswith("# CR101 (error): the URL leaves SQLite on its rollback journal")
    assert all(len(line) <= 110 for line in lines if line.strip().startswith("#"))
    assert any(line.strip().startswith("# CR201 (error)") for line in lines)
    assert any("dialect mattn is guessed" in line for line in lines)


def test_secret_looking_plain_values_are_left_out_with_a_comment(
    reference: Emulator, gateway: CloudRunServices
) -> None:
    observed = _reference(gateway)
    container = dataclasses.replace(
        observed.containers[0],
        env=(
            ("DB_PASSWORD", "hunter2"),
            ("CACHE_URL", "redis://:s3cret@cache:6379"),
            ("DB_URL", SecretRef(secret="db-url", version="4")),
        ),
    )
    text = export_document(
        [dataclasses.replace(observed, containers=(container,), volumes=(("x", GcsVolume("b")),))]
    )
    assert "hunter2" not in text and "s3cret" not in text
    assert "# DB_PASSWORD: a plain value that looks like a secret is not exported" in text
    state = check_desired_text(text).state
    assert state.services[0].env == {"DB_URL": SecretRef(secret="db-url", version="4")}


def test_a_timeout_that_is_not_whole_seconds_is_left_unmanaged(
    reference: Emulator, gateway: CloudRunServices
) -> None:
    observed = dataclasses.replace(_reference(gateway), timeout_seconds=300.5)
    text = export_document([observed])
    assert "timeout 300.5s is not whole seconds: not exported" in text
    assert check_desired_text(text).state.services[0].timeout is None


def test_the_binding_scaling_level_is_exported(reference: Emulator, gateway: CloudRunServices) -> None:
    """Service-level min 1 over a revision capped at 1: the revision level binds, so no false CR201."""
    observed = dataclasses.replace(_reference(gateway), service_min_instances=1, revision_max_instances=1)
    text = export_document([observed])
    scaling = check_desired_text(text).state.services[0].scaling
    assert scaling is not None and (scaling.level.value, scaling.max_instances) == ("revision", 1)
    assert "CR201" not in text and "CR202" in text
