"""Properties over generated services and desired states, through the real client and the emulator:
applying a plan converges (the next plan is empty), planning is deterministic, unowned fields never change."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import run_v2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.cloudrun import CloudRunServices, services_client
from controller.diff import select_container
from controller.plan import PlanMemo, PlanStatus
from controller.reconcile import ApplyResult, reconcile
from desired import DesiredState, ScalingLevel, ServiceSpec
from emulator import Emulator, service_from_dict
from tests.conftest import without_output_only

_names = itertools.count()
ENV_NAMES = ["DATABASE_URL", "LOG_LEVEL", "A", "B_1"]
MOUNT_OPTIONS = ["enable-streaming-writes=false", "stat-cache-ttl=1s", "implicit-dirs"]
env_value = st.one_of(
    st.text(alphabet="abcxyz:/?=&%", max_size=12),
    st.builds(
        lambda s, v: {"secret": s, "version": v},
        st.sampled_from(["db-url", "token"]),
        st.sampled_from(["latest", "1", "7"]),
    ),
)


@st.composite
def bounds(draw: st.DrawFn, high: int = 20) -> tuple[int, int]:
    low = draw(st.integers(0, 5))
    return low, draw(st.integers(max(low, 1), high))


@st.composite
def live_services(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    ingress = draw(st.integers(0, count - 1))
    containers = []
    for index in range(count):
        container: dict[str, Any] = {"name": f"c{index}", "image": f"img-{index}:{draw(st.integers(0, 9))}"}
        if index == ingress:
            container["ports"] = [{"containerPort": 8080}]
        if draw(st.booleans()):
            container["resources"] = {
                "cpuIdle": draw(st.booleans()),
                "startupCpuBoost": draw(st.booleans()),
                "limits": {"cpu": "2", "memory": "1Gi"},
            }
        if draw(st.booleans()):
            container["volumeMounts"] = [
                {"name": "data", "mountPath": draw(st.sampled_from(["/data", "/work"]))}
            ]
        entries = draw(st.dictionaries(st.sampled_from(ENV_NAMES), env_value, max_size=3))
        container["env"] = [
            {"name": k, "valueSource": {"secretKeyRef": v}}
            if isinstance(v, dict)
            else {"name": k, "value": v}
            for k, v in entries.items()
        ]
        containers.append(container)
    service_min, service_max = draw(bounds())
    revision_min, revision_max = draw(bounds(100))
    template: dict[str, Any] = {
        "containers": containers,
        "scaling": {"minInstanceCount": revision_min, "maxInstanceCount": revision_max},
    }
    if draw(st.booleans()):
        template["timeout"] = f"{draw(st.integers(1, 3600))}s"
    if draw(st.booleans()):
        template["executionEnvironment"] = draw(
            st.sampled_from(["EXECUTION_ENVIRONMENT_GEN1", "EXECUTION_ENVIRONMENT_GEN2"])
        )
    if draw(st.booleans()):
        options = draw(st.lists(st.sampled_from(MOUNT_OPTIONS), unique=True, max_size=3))
        template["volumes"] = [
            {
                "name": "data",
                "gcs": {"bucket": draw(st.sampled_from(["bucket-a", "bucket-b"])), "mountOptions": options},
            },
            {"name": "scratch", "emptyDir": {}},
        ]
    return {
        "labels": {"team": draw(st.sampled_from(["a", "b"])), "tier": "x"},
        "annotations": {"example.com/owner": "someone"},
        "scaling": {"minInstanceCount": service_min, "maxInstanceCount": service_max},
        "template": template,
    }


@st.composite
def desired_specs(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["timeout"] = draw(st.sampled_from(["1s", "300s", "60m", "1h", "45m10s", 1200]))
    if draw(st.booleans()):
        low, high = draw(bounds())
        fields["scaling"] = {
            "level": draw(st.sampled_from(["service", "revision"])),
            "minInstances": low,
            "maxInstances": high,
        }
    if draw(st.booleans()):
        fields["cpuAlwaysAllocated"] = draw(st.booleans())
    fields["env"] = draw(st.dictionaries(st.sampled_from(ENV_NAMES), env_value, max_size=3))
    if draw(st.booleans()):
        fields["startupCpuBoost"] = draw(st.booleans())
    if draw(st.booleans()):
        fields["executionEnvironment"] = draw(st.sampled_from(["gen1", "gen2"]))
    if draw(st.booleans()):
        fields["volume"] = {
            "name": draw(st.sampled_from(["data", "data", "scratch"])),
            "bucket": draw(st.sampled_from(["bucket-a", "bucket-c"])),
            "mountPath": draw(st.sampled_from(["/data", "/db"])),
        }
        if draw(st.booleans()):
            fields["volume"]["mountOptions"] = draw(
                st.lists(st.sampled_from(MOUNT_OPTIONS), unique=True, max_size=3)
            )
        if draw(st.booleans()):
            fields["volume"]["readOnly"] = draw(st.booleans())
    fields["labels"] = draw(
        st.dictionaries(st.sampled_from(["team", "owner"]), st.sampled_from(["a", "c"]), max_size=2)
    )
    fields["annotations"] = draw(
        st.dictionaries(st.sampled_from(["example.com/owner", "example.com/x"]), st.just("v"), max_size=2)
    )
    return fields


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Emulator, run_v2.ServicesClient, CloudRunServices]]:
    with Emulator() as server:
        client = services_client(server.address)
        yield server, client, CloudRunServices(client, operation_timeout=10.0)
        client.transport.close()


def _owned_cleared(service: run_v2.Service, spec: ServiceSpec, observed_index: int, existed: bool) -> bytes:
    """The service with every owned and output-only field cleared: what must never change."""
    pb = without_output_only(service)
    if spec.timeout is not None:
        pb.template.ClearField("timeout")
    if spec.execution_environment is not None:
        pb.template.ClearField("execution_environment")
    for key in spec.labels:
        pb.labels.pop(key, None)
    for key in spec.annotations:
        pb.annotations.pop(key, None)
    if spec.volume is not None:
        for volume in list(pb.template.volumes):
            if volume.name != spec.volume.name:
                continue
            if not existed:  # added by the apply: nothing of it was there to keep
                pb.template.volumes.remove(volume)
                continue
            volume.gcs.bucket = ""  # owned; what the file leaves out (readOnly, mountOptions) is not
            if spec.volume.read_only is not None:
                volume.gcs.read_only = False
            if spec.volume.mount_options is not None:
                del volume.gcs.mount_options[:]
    if spec.scaling is not None:
        target = pb.scaling if spec.scaling.level is ScalingLevel.SERVICE else pb.template.scaling
        target.min_instance_count = target.max_instance_count = 0
    container = pb.template.containers[observed_index]
    if spec.cpu_always_allocated is not None:
        container.resources.cpu_idle = False
    if spec.startup_cpu_boost is not None:
        container.resources.startup_cpu_boost = False
    if spec.volume is not None:
        kept_mounts = [m for m in container.volume_mounts if m.name != spec.volume.name]
        del container.volume_mounts[:]
        container.volume_mounts.extend(kept_mounts)
    kept = [env for env in container.env if env.name not in spec.env]
    del container.env[:]
    container.env.extend(kept)
    return pb.SerializeToString(deterministic=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(live=live_services(), fields=desired_specs())
def test_apply_converges_deterministically_and_touches_only_owned_fields(
    world: tuple[Emulator, run_v2.ServicesClient, CloudRunServices],
    live: dict[str, Any],
    fields: dict[str, Any],
) -> None:
    server, client, gateway = world
    name = f"svc-{next(_names)}"
    full_name = f"projects/demo-project/locations/us-central1/services/{name}"
    server.store.seed(service_from_dict({"name": full_name, **live}))
    desired = DesiredState.model_validate(
        {
            "defaults": {"project": "demo-project", "region": "us-central1"},
            "services": [{"name": name, "project": "demo-project", "region": "us-central1", **fields}],
        }
    )
    before = client.get_service(name=full_name)

    memo = PlanMemo()  # as the loop plans: a service whose inputs did not change is not planned again
    first, again = (reconcile(desired, gateway, dry_run=True).plan for _ in range(2))
    assert first == again == reconcile(desired, gateway, dry_run=True, memo=memo).plan  # determinism
    if first.services[0].status is PlanStatus.ERROR:  # e.g. the declared volume name is an emptyDir's
        writes = server.store.calls["UpdateService"]
        assert reconcile(desired, gateway, dry_run=False).outcomes[0].result is ApplyResult.SKIPPED
        assert server.store.calls["UpdateService"] == writes
        return

    result = reconcile(desired, gateway, dry_run=False)
    (outcome,) = result.outcomes
    assert outcome.result in (ApplyResult.APPLIED, ApplyResult.UNCHANGED), outcome.message
    after_plan = reconcile(desired, gateway, dry_run=True).plan
    assert after_plan.services[0].status is PlanStatus.IN_SYNC, after_plan.services[0].changes  # convergence
    assert reconcile(desired, gateway, dry_run=True, memo=memo).plan == after_plan  # the memo saw the write

    after = client.get_service(name=full_name)
    spec = desired.services[0]
    index = select_container(spec, first.services[0].observed.containers).index  # type: ignore[union-attr]
    existed = spec.volume is not None and any(v.name == spec.volume.name for v in before.template.volumes)
    assert _owned_cleared(after, spec, index, existed) == _owned_cleared(before, spec, index, existed)
