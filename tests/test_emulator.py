"""The emulator, driven by the unmodified google-cloud-run client as Cloud Run's API would be."""

from __future__ import annotations

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.api_core.future import polling
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from emulator import Emulator, SeedError, service_from_dict
from tests.conftest import REFERENCE

FAST = polling.DEFAULT_POLLING.with_delay(initial=0.01, maximum=0.1).with_timeout(10)


def update(client: run_v2.ServicesClient, service: run_v2.Service, *paths: str) -> run_v2.Service:
    request = run_v2.UpdateServiceRequest(
        service=service, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )
    return client.update_service(request=request).result(timeout=10, polling=FAST)


def test_get_returns_the_seeded_service_with_server_defaults(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    service = client.get_service(name=REFERENCE)
    assert service.template.containers[0].image.endswith("cagent-api:2026.11.3")
    assert service.generation == 1 and service.observed_generation == 1
    assert service.etag and service.uri.startswith("https://cagent-api-")
    assert service.latest_ready_revision.endswith(
        "/revisions/cagent-api-00001-" + service.latest_ready_revision[-3:]
    )
    assert service.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert service.template.max_instance_request_concurrency == 80


def test_an_empty_template_reads_back_with_cloud_runs_defaults(
    emulator: Emulator, client: run_v2.ServicesClient
) -> None:
    emulator.store.seed(
        service_from_dict(
            {
                "name": "projects/demo-project/locations/us-central1/services/bare",
                "template": {"containers": [{"image": "img"}]},
            }
        )
    )
    service = client.get_service(name="projects/demo-project/locations/us-central1/services/bare")
    assert service.template.timeout.total_seconds() == 300
    assert service.template.scaling.max_instance_count == 100
    assert service.template.containers[0].resources.cpu_idle is True
    assert service.template.containers[0].ports[0].container_port == 8080
    assert service.traffic[0].percent == 100


def test_get_of_an_unknown_service_is_not_found(emulator: Emulator, client: run_v2.ServicesClient) -> None:
    with pytest.raises(gexc.NotFound):
        client.get_service(name="projects/demo-project/locations/us-central1/services/nope")


def test_list_pages_through_every_service_of_a_location(
    emulator: Emulator, client: run_v2.ServicesClient
) -> None:
    for index in range(7):
        emulator.store.seed(
            service_from_dict(
                {
                    "name": f"projects/demo-project/locations/us-central1/services/svc-{index}",
                    "template": {"containers": [{"image": "img"}]},
                }
            )
        )
    emulator.store.seed(
        service_from_dict(
            {
                "name": "projects/demo-project/locations/europe-west1/services/elsewhere",
                "template": {"containers": [{"image": "img"}]},
            }
        )
    )
    pager = client.list_services(
        request={"parent": "projects/demo-project/locations/us-central1", "page_size": 3}
    )
    names = [service.name.rsplit("/", 1)[-1] for service in pager]
    assert names == [f"svc-{i}" for i in range(7)]
    assert emulator.store.calls["ListServices"] == 3


def test_update_honours_the_mask_and_leaves_other_fields_alone(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    service = client.get_service(name=REFERENCE)
    service.template.timeout = {"seconds": 3600}
    service.template.containers[0].image = "attacker/image:latest"  # outside the mask: must not land
    service.labels["team"] = "someone-else"
    updated = update(client, service, "template.timeout")
    assert updated.template.timeout.total_seconds() == 3600
    assert updated.template.containers[0].image.endswith("cagent-api:2026.11.3")
    assert updated.labels["team"] == "agents"


def test_a_template_change_creates_a_revision_and_a_new_etag(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    before = client.get_service(name=REFERENCE)
    before.template.timeout = {"seconds": 1200}
    after = update(client, before, "template.timeout")
    assert after.generation == before.generation + 1
    assert after.etag != before.etag
    assert after.latest_ready_revision != before.latest_ready_revision
    assert "-00002-" in after.latest_ready_revision


def test_a_service_level_scaling_change_creates_no_revision(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    before = client.get_service(name=REFERENCE)
    before.scaling.min_instance_count = 1
    after = update(client, before, "scaling.min_instance_count")
    assert after.scaling.min_instance_count == 1
    assert after.generation == before.generation + 1
    assert after.latest_ready_revision == before.latest_ready_revision


def test_a_stale_etag_is_aborted(reference: Emulator, client: run_v2.ServicesClient) -> None:
    stale = client.get_service(name=REFERENCE)
    fresh = client.get_service(name=REFERENCE)
    fresh.template.timeout = {"seconds": 900}
    update(client, fresh, "template.timeout")
    stale.template.timeout = {"seconds": 3600}
    with pytest.raises(gexc.Aborted, match="etag"):
        update(client, stale, "template.timeout")
    assert client.get_service(name=REFERENCE).template.timeout.total_seconds() == 900


def test_resending_a_known_revision_name_with_a_new_template_is_already_exists(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    service = client.get_service(name=REFERENCE)
    service.template.revision = service.latest_ready_revision.rsplit("/", 1)[-1]
    service.template.timeout = {"seconds": 3600}
    with pytest.raises(gexc.AlreadyExists, match="with different configuration already exists"):
        update(client, service, "template")


def test_invalid_values_are_rejected_with_field_violations(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    service = client.get_service(name=REFERENCE)
    service.template.timeout = {"seconds": 4000}
    service.scaling.min_instance_count = 5
    service.scaling.max_instance_count = 2
    with pytest.raises(gexc.InvalidArgument) as raised:
        update(client, service, "template.timeout", "scaling")
    fields = {violation.field for detail in raised.value.details for violation in detail.field_violations}
    assert fields == {"template.timeout", "scaling.min_instance_count"}


def test_an_unknown_mask_path_is_invalid(reference: Emulator, client: run_v2.ServicesClient) -> None:
    with pytest.raises(gexc.InvalidArgument, match="update_mask"):
        update(client, client.get_service(name=REFERENCE), "template.no_such_field")


def test_operations_can_be_polled_by_name(reference: Emulator, client: run_v2.ServicesClient) -> None:
    service = client.get_service(name=REFERENCE)
    service.template.timeout = {"seconds": 600}
    operation = client.update_service(service=service)
    fetched = client.get_operation(request={"name": operation.operation.name})
    assert fetched.done and fetched.name == operation.operation.name


def test_a_seed_with_an_unknown_field_is_an_error() -> None:
    with pytest.raises(SeedError, match="templat"):
        service_from_dict({"name": REFERENCE, "templat": {}})


def test_a_stored_revision_name_collides_under_a_mask_that_does_not_clear_it(
    emulator: Emulator, client: run_v2.ServicesClient
) -> None:
    """As in googleapis/google-cloud-python#14259: a deploy named its revision; a masked template change
    that leaves the name in place asks for a second revision of that name."""
    emulator.store.seed(
        service_from_dict(
            {
                "name": REFERENCE,
                "template": {"revision": "cagent-api-v1", "containers": [{"image": "img"}]},
            }
        )
    )
    service = client.get_service(name=REFERENCE)
    assert service.latest_ready_revision.endswith("/revisions/cagent-api-v1")
    service.template.timeout = {"seconds": 3600}
    service.template.revision = ""
    with pytest.raises(gexc.AlreadyExists):
        update(client, service, "template.timeout")
    updated = update(client, service, "template.timeout", "template.revision")
    assert updated.template.timeout.total_seconds() == 3600
    assert updated.template.revision == "" and "-00002-" in updated.latest_ready_revision


def test_an_operation_can_take_polls_to_finish(reference: Emulator, client: run_v2.ServicesClient) -> None:
    reference.store.operation_polls = 2
    service = client.get_service(name=REFERENCE)
    service.template.timeout = {"seconds": 600}
    operation = client.update_service(service=service)
    assert not operation.done()  # one poll: still running
    assert operation.result(timeout=10, polling=FAST).template.timeout.total_seconds() == 600
    assert reference.store.calls["GetOperation"] == 2


def test_create_then_delete_through_the_client(emulator: Emulator, client: run_v2.ServicesClient) -> None:
    service = run_v2.Service(template=run_v2.RevisionTemplate(containers=[run_v2.Container(image="img")]))
    parent = "projects/demo-project/locations/us-central1"
    created = client.create_service(parent=parent, service=service, service_id="fresh").result(
        timeout=10, polling=FAST
    )
    assert created.name == f"{parent}/services/fresh" and created.generation == 1
    assert created.template.timeout.total_seconds() == 300
    with pytest.raises(gexc.AlreadyExists):
        client.create_service(parent=parent, service=service, service_id="fresh")
    client.delete_service(name=created.name).result(timeout=10, polling=FAST)
    with pytest.raises(gexc.NotFound):
        client.get_service(name=created.name)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.labels.__setitem__("run.googleapis.com/x", "y"), "labels[run.googleapis.com/x]"),
        (
            lambda s: s.template.containers[0].volume_mounts.append(
                run_v2.VolumeMount(name="sessions", mount_path="/proc/x")
            ),
            "template.containers[0].volume_mounts",
        ),
        (
            lambda s: (
                s.template.containers[0].resources.limits.__setitem__("cpu", "500m"),
                setattr(s.template.containers[0].resources, "cpu_idle", False),
            ),
            "template.containers[0].resources.cpu_idle",
        ),
    ],
    ids=["reserved-label", "mount-under-proc", "always-on-cpu-below-1"],
)
def test_cloud_run_rules_are_enforced(
    reference: Emulator, client: run_v2.ServicesClient, change, field
) -> None:  # type: ignore[no-untyped-def]
    service = client.get_service(name=REFERENCE)
    change(service)
    with pytest.raises(gexc.InvalidArgument) as raised:
        update(client, service)
    assert field in {
        violation.field for detail in raised.value.details for violation in detail.field_violations
    }


def test_injected_faults_fail_the_next_calls_then_stop(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    reference.store.faults.fail_next("UpdateService", 2, grpc.StatusCode.UNAVAILABLE)
    service = client.get_service(name=REFERENCE)
    for _ in range(2):
        with pytest.raises(gexc.ServiceUnavailable):
            client.update_service(service=service)
    assert update(client, service).name == REFERENCE


def test_a_failing_share_is_repeatable_from_its_seed(emulator: Emulator) -> None:
    def draws(seed: int) -> list[bool]:
        emulator.store.faults.clear()
        emulator.store.faults.fail_share("GetService", 0.5, seed=seed)
        return [emulator.store.faults.take("GetService") is not None for _ in range(50)]

    assert draws(7) == draws(7) and 10 < sum(draws(7)) < 40


def person_a_sets_the_timeout(emulator: Emulator, seconds: int = 120) -> None:
    """`gcloud run services update --timeout` by a person, out of band."""
    emulator.store.edit(
        REFERENCE,
        lambda s: s.template.timeout.FromSeconds(seconds),
        principal="user:person-a@example.com",
        client="gcloud",
    )


def test_an_out_of_band_edit_is_recorded_as_its_author(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    person_a_sets_the_timeout(reference)
    live = client.get_service(name=REFERENCE)
    assert (live.last_modifier, live.client, live.template.timeout.total_seconds()) == (
        "user:person-a@example.com",
        "gcloud",
        120,
    )


def test_added_latency_delays_each_call_of_its_method(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    """The delay goes through an injected sleep: counted, not timed."""
    slept: list[float] = []
    reference.store.faults.sleep = slept.append
    reference.store.faults.add_latency("GetService", 0.25)
    client.get_service(name=REFERENCE)
    client.get_service(name=REFERENCE)
    client.list_services(parent="projects/demo-project/locations/us-central1")
    assert slept == [0.25, 0.25]


def test_a_failing_share_draws_each_failure_from_its_codes_and_counts_what_it_injected(
    emulator: Emulator,
) -> None:
    faults = emulator.store.faults
    codes = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED]
    faults.fail_share("GetService", 0.5, codes, seed=3)
    drawn = [faults.take("GetService") for _ in range(200)]
    failed = [error.code.name for error in drawn if error is not None]
    faults.fail_next("UpdateService", 2, grpc.StatusCode.DEADLINE_EXCEEDED)
    faults.take("UpdateService"), faults.take("UpdateService"), faults.take("UpdateService")
    assert set(failed) == {code.name for code in codes} and 60 < len(failed) < 140
    faults.clear()  # what was injected stays counted
    assert faults.injected() == {
        "GetService": {name: failed.count(name) for name in sorted(set(failed))},
        "UpdateService": {"DEADLINE_EXCEEDED": 2},
    }


def test_the_history_holds_each_stored_change_with_its_writer_and_the_service_before_and_after(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    person_a_sets_the_timeout(reference)
    service = client.get_service(name=REFERENCE)
    service.scaling.max_instance_count = 4
    update(client, service, "scaling")
    update(client, client.get_service(name=REFERENCE), "scaling")  # a no-op stores nothing
    edit, api = reference.store.history()
    assert (edit.via, edit.principal, edit.client) == ("edit", "user:person-a@example.com", "gcloud")
    assert (edit.before.template.timeout.seconds, edit.after.template.timeout.seconds) == (300, 120)
    assert (api.via, api.principal, api.mask) == ("UpdateService", "user:operator@example.com", ("scaling",))
    assert (api.before.scaling.max_instance_count, api.after.scaling.max_instance_count) == (0, 4)
    assert reference.store.history(1) == [api]


def test_the_control_endpoint_reads_services_writes_and_faults_without_an_api_call(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    from emulator.admin import AdminServer
    from tests.processes import http

    admin = AdminServer(reference).start()
    try:
        base = f"http://{admin.address}/v1"
        body = {"method": "GetService", "share": 1.0, "codes": ["INTERNAL"], "seed": 1}
        assert http("POST", f"{base}/faults", body) == (200, {"method": "GetService", "codes": ["INTERNAL"]})
        with pytest.raises(gexc.InternalServerError):
            client.get_service(name=REFERENCE)
        assert http("GET", f"{base}/faults") == (200, {"injected": {"GetService": {"INTERNAL": 1}}})
        edit = {"name": REFERENCE, "principal": "user:b@example.com", "service": {"labels": {"x": "y"}}}
        assert http("POST", f"{base}/edit", edit)[0] == 200
        status, services = http("GET", f"{base}/services")
        assert status == 200 and [s["name"] for s in services["services"]] == [REFERENCE]
        assert services["services"][0]["labels"]["x"] == "y"
        status, writes = http("GET", f"{base}/writes?since=0")
        assert status == 200 and writes["next"] == 1
        (write,) = writes["writes"]
        assert (write["index"], write["via"], write["principal"]) == (0, "edit", "user:b@example.com")
        assert "x" not in write["before"].get("labels", {}) and write["after"]["labels"]["x"] == "y"
        assert http("GET", f"{base}/writes?since=1")[1] == {"writes": [], "next": 1}
        assert http("GET", f"{base}/writes?since=x")[0] == 400
        assert http("POST", f"{base}/faults", {"method": "GetService", "share": 1, "codes": []})[0] == 400
        assert reference.store.calls["GetService"] == 1  # the reads above were not API calls
    finally:
        admin.stop()
