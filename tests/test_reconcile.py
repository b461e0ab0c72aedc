"""A reconcile pass end to end: the real google-cloud-run client against the emulator, no mocks."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.cloud import run_v2
from google.protobuf import field_mask_pb2

from controller.cloudrun import CLIENT_NAME, CloudRunServices, observe
from controller.diff import FieldChange
from controller.model import LiveService
from controller.plan import PlanMemo, PlanStatus
from controller.reconcile import ApplyResult, reconcile
from desired import DesiredState, load_desired, load_desired_text
from emulator import Emulator, service_from_dict
from tests.conftest import REFERENCE, ROOT, as_found_services

WAL_URL = "sqlite:///work/sessions.db?_journal_mode=WAL&_busy_timeout=5000"


def root_desired() -> DesiredState:
    return load_desired(ROOT / "desired-state.yaml")


def test_the_four_knobs_converge_and_nothing_else_changes(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    before = client.get_service(name=REFERENCE)
    result = reconcile(root_desired(), gateway, dry_run=False)
    (outcome,) = result.outcomes
    assert outcome.result is ApplyResult.APPLIED, outcome.message
    assert {change.path for change in result.plan.services[0].changes} == {
        "scaling.min_instance_count",
        "scaling.max_instance_count",
        "template.timeout",
        "template.containers[cagent-api-1].resources.cpu_idle",
        "template.containers[cagent-api-1].env[DATABASE_URL]",
        "template.volumes[sessions]",  # mount options: enable-streaming-writes=false
    }

    after = client.get_service(name=REFERENCE)
    container = after.template.containers[0]
    assert after.template.timeout.total_seconds() == 3600
    assert (after.scaling.min_instance_count, after.scaling.max_instance_count) == (1, 10)
    assert container.resources.cpu_idle is False
    env = {e.name: e.value for e in container.env}
    assert env["DATABASE_URL"] == WAL_URL
    (volume,) = after.template.volumes
    assert (volume.name, volume.gcs.bucket, list(volume.gcs.mount_options)) == (
        "sessions",
        "demo-project-cagent-sessions",
        ["enable-streaming-writes=false"],
    )
    # unowned: image, the other env var and its place, the label, the resource limits, the startup boost
    assert container.image == before.template.containers[0].image
    assert [e.name for e in container.env] == ["DATABASE_URL", "LOG_LEVEL"] and env["LOG_LEVEL"] == "info"
    assert dict(after.labels) == {"team": "agents"}
    assert container.volume_mounts == before.template.containers[0].volume_mounts
    assert container.resources.startup_cpu_boost is True
    assert dict(container.resources.limits) == dict(before.template.containers[0].resources.limits)
    assert after.template.scaling.max_instance_count == 100  # the revision level was not touched
    assert after.etag != before.etag and outcome.etag_after == after.etag
    assert after.client == CLIENT_NAME

    second = reconcile(root_desired(), gateway, dry_run=True)
    assert second.plan.services[0].status is PlanStatus.IN_SYNC
    assert second.plan.services[0].changes == ()
    assert second.plan.exit_code == 0


def test_a_dry_run_writes_nothing(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    etag = client.get_service(name=REFERENCE).etag
    result = reconcile(root_desired(), gateway, dry_run=True)
    assert result.plan.exit_code == 2
    assert result.outcomes[0].result is ApplyResult.SKIPPED
    assert reference.store.calls["UpdateService"] == 0
    assert client.get_service(name=REFERENCE).etag == etag


def test_one_list_call_per_project_and_region(reference: Emulator, gateway: CloudRunServices) -> None:
    reconcile(root_desired(), gateway, dry_run=True)
    assert dict(reference.store.calls) == {"ListServices": 1}


def test_only_the_changed_owned_paths_are_in_the_update_mask(
    reference: Emulator, gateway: CloudRunServices
) -> None:
    reconcile(root_desired(), gateway, dry_run=False)
    desired = load_desired_text(
        "defaults: {project: demo-project, region: us-central1}\n"
        "services:\n  - name: cagent-api\n    timeout: 30m\n    scaling: {level: service, maxInstances: 10}\n"
    )
    result = reconcile(desired, gateway, dry_run=False)
    assert result.outcomes[0].result is ApplyResult.APPLIED
    assert reference.store.update_masks == [
        [
            "scaling.min_instance_count",
            "scaling.max_instance_count",
            "template.timeout",
            "template.volumes",
            "template.containers",
            "annotations",  # the record of what was applied: a fingerprint per owned field
            "template.revision",  # cleared on the server too, so a stored name cannot collide
        ],
        ["template.timeout", "annotations", "template.revision"],
    ]
    assert all(sent.template.revision == "" for sent in reference.store.update_requests)
    assert all(sent.etag for sent in reference.store.update_requests)


def test_a_missing_service_is_reported_and_never_created(
    emulator: Emulator, gateway: CloudRunServices
) -> None:
    result = reconcile(root_desired(), gateway, dry_run=False)
    assert result.plan.services[0].status is PlanStatus.MISSING
    assert result.plan.exit_code == 1 and result.failed
    assert emulator.store.calls["UpdateService"] == 0


class EditsBetweenReadAndWrite(CloudRunServices):
    """The real gateway, with someone else's edit landing after the read and before the first write."""

    def __init__(self, client: run_v2.ServicesClient, edit: run_v2.Service, paths: list[str]) -> None:
        super().__init__(client, operation_timeout=10.0)
        self._edit: tuple[run_v2.Service, list[str]] | None = (edit, paths)

    def apply(self, live: LiveService, changes: Sequence[FieldChange]) -> LiveService:
        if self._edit is not None:
            service, paths = self._edit
            self._edit = None
            request = run_v2.UpdateServiceRequest(
                service=service, update_mask=field_mask_pb2.FieldMask(paths=paths)
            )
            self._client.update_service(request=request).result(timeout=10)
        return super().apply(live, changes)


def test_a_concurrent_edit_is_never_overwritten(reference: Emulator, client: run_v2.ServicesClient) -> None:
    deploy = client.get_service(name=REFERENCE)
    deploy.template.containers[0].image = "us-docker.pkg.dev/demo-project/agents/cagent-api:2026.12.1"
    deploy.template.timeout = {"seconds": 300}
    gateway = EditsBetweenReadAndWrite(client, deploy, ["template.containers", "template.timeout"])
    result = reconcile(root_desired(), gateway, dry_run=False)
    assert result.outcomes[0].result is ApplyResult.APPLIED, result.outcomes[0].message
    after = client.get_service(name=REFERENCE)
    assert after.template.containers[0].image.endswith(":2026.12.1")  # the deploy's image survived
    assert after.template.timeout.total_seconds() == 3600  # and the owned knob was re-planned and applied
    assert reference.store.calls["GetService"] >= 1  # the re-read after the conflict


def test_a_rejected_update_is_a_failed_outcome_not_a_crash(
    reference: Emulator, gateway: CloudRunServices
) -> None:
    desired = load_desired_text(
        "defaults: {project: demo-project, region: us-central1}\n"
        # valid on its own, but above the live maximum: Cloud Run (and the emulator) refuse min > max
        "services:\n  - name: cagent-api\n    scaling: {level: service, minInstances: 20}\n"
    )
    client = gateway._client
    live = client.get_service(name=REFERENCE)
    live.scaling.max_instance_count = 10
    client.update_service(service=live, update_mask={"paths": ["scaling.max_instance_count"]}).result(
        timeout=10
    )
    result = reconcile(desired, gateway, dry_run=False)
    (outcome,) = result.outcomes
    assert outcome.result is ApplyResult.FAILED
    assert "INVALID_ARGUMENT" in outcome.message and result.failed
    assert "scaling.min_instance_count: min_instance_count must be less than" in outcome.message


def test_a_deploy_that_named_its_revision_does_not_make_apply_collide(
    emulator: Emulator, gateway: CloudRunServices, client: run_v2.ServicesClient
) -> None:
    (service,) = as_found_services()
    service.template.revision = "cagent-api-v1"
    emulator.store.seed(service)
    result = reconcile(root_desired(), gateway, dry_run=False)
    assert result.outcomes[0].result is ApplyResult.APPLIED, result.outcomes[0].message
    assert client.get_service(name=REFERENCE).template.revision == ""


def test_pinned_traffic_is_reported_not_hidden(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    """After `deploy --no-traffic` or a rollback, new revisions serve nothing: say so, claim no success."""
    live = client.get_service(name=REFERENCE)
    revision = live.latest_ready_revision.rsplit("/", 1)[-1]
    pin = run_v2.TrafficTarget(
        type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
        revision=revision,
        percent=100,
    )
    del live.traffic[:]
    live.traffic.append(pin)
    client.update_service(service=live, update_mask={"paths": ["traffic"]}).result(timeout=10)

    result = reconcile(root_desired(), gateway, dry_run=False)
    (outcome,) = result.outcomes
    assert outcome.result is ApplyResult.APPLIED
    assert "serves only 0 % of traffic" in outcome.message
    after = reconcile(root_desired(), gateway, dry_run=True).plan.services[0]
    assert after.status is PlanStatus.IN_SYNC  # what is declared is in place…
    assert (
        after.notes and f"{revision} serve the rest" in after.notes[0]
    )  # …and the plan says it is not serving


def test_a_concurrent_change_that_makes_the_spec_unplannable_is_a_failure(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    rename = client.get_service(name=REFERENCE)
    rename.template.containers[0].name = "renamed"
    gateway = EditsBetweenReadAndWrite(client, rename, ["template.containers"])
    desired = load_desired_text(
        "defaults: {project: demo-project, region: us-central1}\n"
        "services:\n  - name: cagent-api\n    container: cagent-api-1\n    cpuAlwaysAllocated: true\n"
    )
    result = reconcile(desired, gateway, dry_run=False)
    (outcome,) = result.outcomes
    assert outcome.result is ApplyResult.FAILED and result.failed
    assert "container 'cagent-api-1' not found" in outcome.message


def test_an_operation_that_never_finishes_is_a_transient_failure_not_a_crash(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    reference.store.operation_polls = None  # a rollout that never completes
    gateway = CloudRunServices(client, operation_timeout=0.3)
    result = reconcile(root_desired(), gateway, dry_run=False)
    (outcome,) = result.outcomes
    assert outcome.result is ApplyResult.FAILED
    assert "did not finish in time" in outcome.message


def test_a_failed_poll_of_the_operation_is_retried_and_is_never_a_failed_rollout(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    """GetOperation is a read: transient errors are retried; one that persists leaves the outcome unknown
    (transient, read again next pass), never "the rollout failed" with its 300 s wait."""
    reference.store.operation_polls = 2
    reference.store.faults.fail_next("GetOperation", 1, grpc.StatusCode.INTERNAL)
    reference.store.faults.fail_next("GetOperation", 1, grpc.StatusCode.UNAVAILABLE)
    (outcome,) = reconcile(root_desired(), gateway, dry_run=False).outcomes
    assert outcome.result is ApplyResult.APPLIED, outcome.message
    assert reference.store.calls["GetOperation"] >= 4

    reference.store.edit(
        REFERENCE, lambda s: s.template.timeout.FromSeconds(300), principal="user:alice@example.com"
    )
    reference.store.faults.fail_next("GetOperation", 1, grpc.StatusCode.PERMISSION_DENIED)  # not retried
    (outcome,) = reconcile(root_desired(), gateway, dry_run=False).outcomes
    assert outcome.result is ApplyResult.FAILED and outcome.error_kind == "transient"
    assert "polling its operation failed: PERMISSION_DENIED" in outcome.message
    assert "rollout" not in outcome.message
    assert client.get_service(name=REFERENCE).template.timeout.seconds == 3600  # it was stored all along
    again = reconcile(root_desired(), gateway, dry_run=False)
    assert again.outcomes[0].result is ApplyResult.UNCHANGED


def test_a_revision_that_never_becomes_ready_is_failed_with_the_apis_message_and_not_retried(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    reference.store.failing_revisions = "The user-provided container failed to start and listen on the port."
    result = reconcile(root_desired(), gateway, dry_run=False)
    (outcome,) = result.outcomes
    assert outcome.result is ApplyResult.FAILED and result.failed
    assert "the rollout failed: FAILED_PRECONDITION" in outcome.message
    assert "failed to start and listen on the port" in outcome.message
    assert reference.store.calls["UpdateService"] == 1  # a failed rollout is not an etag conflict: no retry

    again = reconcile(root_desired(), gateway, dry_run=False)  # the next pass: nothing left to write
    assert again.plan.services[0].status is PlanStatus.FAILED
    assert "cannot serve traffic" in again.plan.services[0].message
    assert reference.store.calls["UpdateService"] == 1 and again.plan.exit_code == 1
    live = client.get_service(name=REFERENCE)
    assert live.latest_ready_revision != live.latest_created_revision  # still serving the old revision


def _person_sets_timeout(emulator: Emulator, seconds: int) -> None:
    """`gcloud run services update --timeout` by a person: recorded as theirs."""
    emulator.store.edit(
        REFERENCE,
        lambda s: s.template.timeout.FromSeconds(seconds),
        principal="user:alice@example.com",
        client="gcloud",
    )


def _with_policy(policy: str, timeout: str = "1h", max_instances: int = 10) -> DesiredState:
    return load_desired_text(
        "defaults: {project: demo-project, region: us-central1}\n"
        f"services:\n  - name: cagent-api\n    timeout: {timeout}\n    outOfBand: {policy}\n"
        f"    scaling: {{level: service, maxInstances: {max_instances}}}\n"
    )


def test_the_first_write_is_an_adoption_under_any_policy(
    reference: Emulator, gateway: CloudRunServices
) -> None:
    """Never written by this controller (seeded by gcloud): nothing to call out of band, so it applies."""
    result = reconcile(_with_policy("stop"), gateway, dry_run=False)
    assert result.outcomes[0].result is ApplyResult.APPLIED and result.plan.services[0].out_of_band == ()


def test_an_out_of_band_change_names_its_author_and_revert_writes_it_back(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    reconcile(_with_policy("revert"), gateway, dry_run=False)
    _person_sets_timeout(reference, 300)
    result = reconcile(_with_policy("revert"), gateway, dry_run=False)
    (service,) = result.plan.services
    assert service.out_of_band == ("template.timeout",)
    assert "by user:alice@example.com with gcloud; apply reverts it" in service.notes[0]
    assert result.outcomes[0].result is ApplyResult.APPLIED
    assert client.get_service(name=REFERENCE).template.timeout.total_seconds() == 3600


def test_report_keeps_their_change_and_still_applies_the_files(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    reconcile(_with_policy("report"), gateway, dry_run=False)
    _person_sets_timeout(reference, 300)
    result = reconcile(_with_policy("report", max_instances=5), gateway, dry_run=False)
    (outcome,) = result.outcomes
    assert outcome.result is ApplyResult.APPLIED and "kept template.timeout" in outcome.message
    live = client.get_service(name=REFERENCE)
    assert (live.template.timeout.total_seconds(), live.scaling.max_instance_count) == (300, 5)
    again = reconcile(_with_policy("report", max_instances=5), gateway, dry_run=False)
    assert again.plan.services[0].out_of_band == ("template.timeout",)  # still reported, never reverted
    assert again.outcomes[0].result is ApplyResult.SKIPPED and not again.failed


def test_stop_fails_and_writes_nothing(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    reconcile(_with_policy("stop"), gateway, dry_run=False)
    _person_sets_timeout(reference, 300)
    writes = reference.store.calls["UpdateService"]
    result = reconcile(_with_policy("stop", max_instances=5), gateway, dry_run=False)
    assert result.outcomes[0].result is ApplyResult.FAILED and result.failed
    assert "alice@example.com changed template.timeout" in result.outcomes[0].message
    assert reference.store.calls["UpdateService"] == writes


def test_a_deploy_that_touches_only_unowned_fields_is_not_out_of_band(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    """CI deploys a new image; the team then changes the timeout in git, under `stop`: that is applied."""
    reconcile(_with_policy("stop"), gateway, dry_run=False)
    reference.store.edit(
        REFERENCE,
        lambda s: setattr(s.template.containers[0], "image", "img:ci"),
        principal="serviceAccount:ci@x",
        client="gcloud",
    )
    result = reconcile(_with_policy("stop", timeout="30m"), gateway, dry_run=False)
    assert result.outcomes[0].result is ApplyResult.APPLIED, result.outcomes[0].message
    assert client.get_service(name=REFERENCE).template.containers[0].image == "img:ci"


def test_an_out_of_band_change_during_a_conflict_is_caught_on_the_retry(
    reference: Emulator, client: run_v2.ServicesClient
) -> None:
    gateway = CloudRunServices(client, operation_timeout=10.0)
    reconcile(_with_policy("stop"), gateway, dry_run=False)
    alice = client.get_service(name=REFERENCE)
    alice.template.timeout = {"seconds": 1200}
    racing = EditsBetweenReadAndWrite(client, alice, ["template.timeout"])
    result = reconcile(_with_policy("stop", timeout="15m"), racing, dry_run=False)
    assert result.outcomes[0].result is ApplyResult.FAILED and "outOfBand: stop" in result.outcomes[0].message
    assert client.get_service(name=REFERENCE).template.timeout.total_seconds() == 1200


def test_a_server_dry_run_asks_the_api_and_stores_nothing(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    etag = client.get_service(name=REFERENCE).etag
    result = reconcile(root_desired(), gateway, dry_run=True, server_dry_run=True)
    (outcome,) = result.outcomes
    assert outcome.result is ApplyResult.SKIPPED and "the API accepts this update" in outcome.message
    assert [sent.name for sent in reference.store.update_requests] == [REFERENCE]
    assert client.get_service(name=REFERENCE).etag == etag

    refused = load_desired_text(
        "defaults: {project: demo-project, region: us-central1}\n"
        "services:\n  - name: cagent-api\n    scaling: {level: revision, minInstances: 150}\n"
    )
    (outcome,) = reconcile(refused, gateway, dry_run=True, server_dry_run=True).outcomes
    assert outcome.result is ApplyResult.FAILED
    assert outcome.message.startswith("server dry run: rejected: INVALID_ARGUMENT")
    assert client.get_service(name=REFERENCE).etag == etag


def test_a_fleet_across_projects_and_regions_takes_one_list_per_location_and_touches_only_its_services(
    emulator: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    locations = [
        ("demo-project", "us-central1"),
        ("demo-project", "europe-west1"),
        ("other-project", "us-central1"),
    ]
    for project, region in locations:
        for name in ("declared", "bystander"):
            emulator.store.seed(
                service_from_dict(
                    {
                        "name": f"projects/{project}/locations/{region}/services/{name}",
                        "template": {"containers": [{"image": "img"}]},
                    }
                )
            )
    services = "".join(
        f"  - {{name: declared, project: {project}, region: {region}, timeout: 1h}}\n"
        for project, region in locations
    )
    desired = load_desired_text(f"services:\n{services}")
    result = reconcile(desired, gateway, dry_run=False)
    assert [o.result for o in result.outcomes] == [ApplyResult.APPLIED] * 3
    assert emulator.store.calls["ListServices"] == 3 and emulator.store.calls["GetService"] == 0
    for project, region in locations:
        bystander = client.get_service(name=f"projects/{project}/locations/{region}/services/bystander")
        assert bystander.generation == 1 and bystander.template.timeout.total_seconds() == 300


def test_api_failures_are_reported_per_service_never_a_crash(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    reference.store.faults.fail_next("UpdateService", 1, grpc.StatusCode.UNAVAILABLE)
    result = reconcile(root_desired(), gateway, dry_run=False)
    (outcome,) = result.outcomes
    assert outcome.result is ApplyResult.FAILED and outcome.message.startswith("UNAVAILABLE")
    assert (
        reconcile(root_desired(), gateway, dry_run=False).outcomes[0].result is ApplyResult.APPLIED
    )  # next pass

    reference.store.faults.fail_next("ListServices", 5, grpc.StatusCode.PERMISSION_DENIED)
    denied = reconcile(root_desired(), gateway, dry_run=True)
    assert denied.plan.services[0].status is PlanStatus.ERROR
    assert "PERMISSION_DENIED" in denied.plan.services[0].message and denied.plan.exit_code == 1


def test_a_failed_revision_stays_failed_when_only_service_level_fields_change(
    reference: Emulator, client: run_v2.ServicesClient, gateway: CloudRunServices
) -> None:
    reference.store.failing_revisions = "The user-provided container failed to start."
    reconcile(root_desired(), gateway, dry_run=False)
    reference.store.failing_revisions = None
    live = client.get_service(name=REFERENCE)
    ready, created = live.latest_ready_revision, live.latest_created_revision
    live.labels["team"] = "b"
    client.update_service(service=live, update_mask={"paths": ["labels"]}).result(timeout=10)
    after = client.get_service(name=REFERENCE)
    assert (after.latest_ready_revision, after.latest_created_revision) == (ready, created)
    assert reconcile(root_desired(), gateway, dry_run=True).plan.services[0].status is PlanStatus.FAILED


def test_the_plan_says_what_report_and_stop_will_do(reference: Emulator, gateway: CloudRunServices) -> None:
    reconcile(_with_policy("report"), gateway, dry_run=False)
    _person_sets_timeout(reference, 300)
    kept = reconcile(_with_policy("report", max_instances=5), gateway, dry_run=True).plan.services[0]
    assert [c.path for c in kept.writes] == ["scaling.max_instance_count"] and not kept.creates_revision
    assert "apply keeps it as they left it" in kept.notes[0]
    stopped = reconcile(_with_policy("stop", max_instances=5), gateway, dry_run=True).plan.services[0]
    assert stopped.writes == () and "apply writes nothing" in stopped.notes[0]
    reconcile(
        _with_policy("report", max_instances=5), gateway, dry_run=False
    )  # writes; keeps alice's timeout
    after = reconcile(_with_policy("report", max_instances=5), gateway, dry_run=True).plan.services[0]
    assert "by someone else, before this controller's last write" in after.notes[0]


def test_a_steady_service_is_not_translated_or_planned_again_and_a_changed_one_is(
    reference: Emulator, gateway: CloudRunServices
) -> None:
    """The listing hands back the very view it made last time for a service whose message is unchanged,
    and the plan memo the very plan; an out-of-band edit gives a fresh view, a fresh plan, and the drift."""
    memo = PlanMemo()
    desired = root_desired()
    reconcile(desired, gateway, dry_run=False)
    first, again = (reconcile(desired, gateway, dry_run=True, memo=memo).plan.services[0] for _ in range(2))
    assert again is first and again.status is PlanStatus.IN_SYNC
    assert first == reconcile(desired, gateway, dry_run=True).plan.services[0]  # as without the memo

    _person_sets_timeout(reference, 300)
    drifted = reconcile(desired, gateway, dry_run=True, memo=memo).plan.services[0]
    assert drifted.observed is not first.observed
    assert drifted.observed == observe(reference.store.get(REFERENCE))
    assert [change.path for change in drifted.changes] == ["template.timeout"]
    assert drifted == reconcile(desired, gateway, dry_run=True).plan.services[0]


def test_a_service_read_with_a_secret_version_alias_never_stops_the_pass(
    reference: Emulator, gateway: CloudRunServices
) -> None:
    """Cloud Run takes `latest`, a number or an alias; what the API holds is read, not judged by the file's
    rules, even for a service the file does not declare."""
    reference.store.seed(
        service_from_dict(
            {
                "name": REFERENCE.replace("cagent-api", "billing"),
                "template": {
                    "containers": [
                        {
                            "image": "img:1",
                            "env": [
                                {
                                    "name": "KEY",
                                    "valueSource": {"secretKeyRef": {"secret": "k", "version": "prod"}},
                                }
                            ],
                        }
                    ]
                },
            }
        )
    )
    result = reconcile(root_desired(), gateway, dry_run=True)
    assert [s.status for s in result.plan.services] == [PlanStatus.DRIFTED]
    aliased = load_desired_text(
        "defaults: {project: demo-project, region: us-central1}\n"
        "services:\n  - name: billing\n    env:\n      KEY: {secret: k, version: prod}\n"
    )
    assert reconcile(aliased, gateway, dry_run=True).plan.services[0].status is PlanStatus.IN_SYNC
