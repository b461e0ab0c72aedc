"""The v2-shaped field cases (tests/fixtures/cases/*-v2-*, copied from the project's shared notes): each seeds
the emulator, reads back with its unusual parts intact, plans clean against its own export, and takes exactly
one change when one owned field differs, leaving every other field as it was. Every case, whatever its shape,
is read through the seed loader in tests/test_seeds.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.api import launch_stage_pb2
from google.cloud import run_v2

from controller.cloudrun import CloudRunServices
from controller.export import export_document
from controller.plan import PlanStatus
from controller.reconcile import ApplyResult, reconcile
from desired import ServiceKey, check_desired_text
from emulator import Emulator, service_from_dict
from tests.conftest import without_output_only

CASES = sorted((Path(__file__).parent / "fixtures" / "cases").glob("*-v2-*.yaml"))


def _seed(emulator: Emulator, path: Path) -> ServiceKey:
    service = emulator.store.seed(service_from_dict(yaml.safe_load(path.read_text()), str(path)))
    _, project, _, region, _, name = service.name.split("/")
    return ServiceKey(project=project, region=region, name=name)


def _unowned(service: run_v2.Service) -> bytes:
    pb = without_output_only(service)
    pb.template.ClearField("timeout")
    return pb.SerializeToString(deterministic=True)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_the_case_reads_back_with_its_unusual_parts(
    path: Path, emulator: Emulator, client: run_v2.ServicesClient
) -> None:
    key = _seed(emulator, path)
    service = client.get_service(name=key.resource_name)
    source = yaml.safe_load(path.read_text())
    assert launch_stage_pb2.LaunchStage.Name(service.launch_stage) == source.get("launchStage", "GA")
    assert [c.name for c in service.template.containers] == [
        c.get("name", "") for c in source["template"]["containers"]
    ]
    assert [v.name for v in service.template.volumes] == [
        v["name"] for v in source["template"].get("volumes", [])
    ]
    if "dependsOn" in str(source):
        assert list(service.template.containers[0].depends_on) == ["helper"]
        assert service.template.volumes[0].empty_dir.size_limit == "128Mi"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_its_own_export_plans_clean_and_one_owned_change_is_exactly_one_change(
    path: Path, emulator: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    key = _seed(emulator, path)
    text = export_document([gateway.get_service(key).observed])
    checked = check_desired_text(text)
    clean = reconcile(checked.state, gateway, dry_run=True).plan.services[0]
    assert clean.status is PlanStatus.IN_SYNC, clean

    before = client.get_service(name=key.resource_name)
    changed = check_desired_text(text.replace("timeout: 300s", "timeout: 1h")).state
    result = reconcile(changed, gateway, dry_run=False)
    assert [c.path for c in result.plan.services[0].changes] == ["template.timeout"]
    assert result.outcomes[0].result is ApplyResult.APPLIED, result.outcomes[0].message
    after = client.get_service(name=key.resource_name)
    assert after.template.timeout.total_seconds() == 3600
    assert _unowned(after) == _unowned(before)
