"""The v1 Knative seed shape on small inline services: how each annotation and field maps to v2, the way the
Cloud Run YAML reference (cloud.google.com/run/docs/reference/yaml/v1) and gcloud's annotation constants
have them, and what is refused, every problem at once with its path.

Pure functions (the loader returns v2 protobufs), so no emulator.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from emulator import SeedError, load_seed_text


def _doc(
    service_annotations: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
    container: dict[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A small Knative Service: svc-a in p1/r1, one container, the parts given merged in."""
    document: dict[str, Any] = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": "svc-a",
            "namespace": "p1",
            "labels": {"cloud.googleapis.com/location": "r1"},
            "annotations": service_annotations or {},
        },
        "spec": {
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"containers": [{"image": "us-docker.pkg.dev/p1/repo/app:v1", **(container or {})}]},
            }
        },
    }
    document["spec"]["template"]["spec"].update(spec or {})
    document.update(top)
    return document


def _load(document: dict[str, Any]) -> dict[str, Any]:
    (service,) = load_seed_text(yaml.safe_dump(document), "service.yaml")
    found: dict[str, Any] = json_format.MessageToDict(service)
    return found


def _refused(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SeedError) as error:
        load_seed_text(yaml.safe_dump(document), "service.yaml")
    return [line.removeprefix("service.yaml: ") for line in str(error.value).splitlines()]


def _container(service: dict[str, Any]) -> dict[str, Any]:
    (container,) = service["template"]["containers"]
    assert isinstance(container, dict)
    return container


TEMPLATE_ANNOTATIONS = "spec.template.metadata.annotations"
SERVICE_ANNOTATIONS = "metadata.annotations"


def test_instance_counts_at_the_revision_and_at_the_service_level() -> None:
    service = _load(
        _doc(
            service_annotations={"run.googleapis.com/minScale": "2", "run.googleapis.com/maxScale": "8"},
            annotations={"autoscaling.knative.dev/minScale": "1", "autoscaling.knative.dev/maxScale": "3"},
        )
    )
    assert service["scaling"] == {"minInstanceCount": 2, "maxInstanceCount": 8}
    assert service["template"]["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 3}


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (
            _doc(service_annotations={"autoscaling.knative.dev/minScale": "1"}),
            f"{SERVICE_ANNOTATIONS}[autoscaling.knative.dev/minScale]: a revision's annotation: it belongs "
            f"under {TEMPLATE_ANNOTATIONS}; the service-wide count is run.googleapis.com/minScale",
        ),
        (
            _doc(annotations={"run.googleapis.com/maxScale": "3"}),
            f"{TEMPLATE_ANNOTATIONS}[run.googleapis.com/maxScale]: a service's annotation: it belongs under "
            f"{SERVICE_ANNOTATIONS}; a revision's count is autoscaling.knative.dev/maxScale",
        ),
        (
            _doc(annotations={"autoscaling.knative.dev/maxScale": "ten"}),
            f"{TEMPLATE_ANNOTATIONS}[autoscaling.knative.dev/maxScale]: expected a whole number of instances",
        ),
    ],
    ids=["revision-count-on-service", "service-count-on-revision", "not-a-number"],
)
def test_an_instance_count_at_the_wrong_level_or_not_a_number_is_refused(
    document: dict[str, Any], says: str
) -> None:
    (found,) = _refused(document)
    assert found.startswith(says), found


@pytest.mark.parametrize(
    ("annotations", "resources"),
    [
        ({}, {"cpuIdle": True}),  # throttled unless told otherwise
        ({"run.googleapis.com/cpu-throttling": "false"}, {}),  # always allocated: cpu_idle false, not printed
        ({"run.googleapis.com/cpu-throttling": "true"}, {"cpuIdle": True}),
        (
            {"run.googleapis.com/cpu-throttling": "false", "run.googleapis.com/startup-cpu-boost": "true"},
            {"startupCpuBoost": True},
        ),
    ],
    ids=["absent", "false", "true", "boost"],
)
def test_cpu_throttling_is_cpu_idle_of_every_container(
    annotations: dict[str, str], resources: dict[str, Any]
) -> None:
    sidecar = {"name": "sidecar", "image": "us-docker.pkg.dev/p1/repo/side:v1"}
    document = _doc(annotations=annotations, container={"name": "app"})
    document["spec"]["template"]["spec"]["containers"].append(sidecar)
    service = _load(document)
    assert [c.get("resources", {}) for c in service["template"]["containers"]] == [resources, resources]


@pytest.mark.parametrize(
    ("key", "value", "field", "mapped"),
    [
        (
            "run.googleapis.com/execution-environment",
            "gen1",
            "executionEnvironment",
            "EXECUTION_ENVIRONMENT_GEN1",
        ),
        (
            "run.googleapis.com/execution-environment",
            "gen2",
            "executionEnvironment",
            "EXECUTION_ENVIRONMENT_GEN2",
        ),
        ("run.googleapis.com/sessionAffinity", "true", "sessionAffinity", True),
        ("run.googleapis.com/vpc-access-egress", "all-traffic", "vpcAccess", {"egress": "ALL_TRAFFIC"}),
    ],
)
def test_revision_annotations_that_are_v2_template_fields(
    key: str, value: str, field: str, mapped: Any
) -> None:
    assert _load(_doc(annotations={key: value}))["template"][field] == mapped


@pytest.mark.parametrize(
    ("value", "mapped"),
    [
        ("all", "INGRESS_TRAFFIC_ALL"),
        ("internal", "INGRESS_TRAFFIC_INTERNAL_ONLY"),
        ("internal-and-cloud-load-balancing", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"),
        ("none", "INGRESS_TRAFFIC_NONE"),
    ],
)
def test_ingress_annotation(value: str, mapped: str) -> None:
    service = _load(_doc(service_annotations={"run.googleapis.com/ingress": value}))
    assert service["ingress"] == mapped


@pytest.mark.parametrize(
    ("annotations", "says"),
    [
        (
            {"run.googleapis.com/execution-environment": "gen3"},
            f"{TEMPLATE_ANNOTATIONS}[run.googleapis.com/execution-environment]: expected one of gen1, gen2, "
            "got 'gen3'",
        ),
        (
            {"run.googleapis.com/cpu-throttling": "maybe"},
            f"{TEMPLATE_ANNOTATIONS}[run.googleapis.com/cpu-throttling]: expected true or false, got 'maybe'",
        ),
        (
            {"run.googleapis.com/startup-probe-type": "x"},
            f"{TEMPLATE_ANNOTATIONS}[run.googleapis.com/startup-probe-type]: annotation in a reserved",
        ),
    ],
    ids=["generation", "throttling", "unknown-reserved"],
)
def test_a_revision_annotation_with_a_value_cloud_run_does_not_take_is_refused(
    annotations: dict[str, str], says: str
) -> None:
    (found,) = _refused(_doc(annotations=annotations))
    assert found.startswith(says), found


def test_timeout_and_concurrency_as_numbers_or_strings_of_digits() -> None:
    service = _load(_doc(spec={"timeoutSeconds": "3600", "containerConcurrency": 1}))
    assert (service["template"]["timeout"], service["template"]["maxInstanceRequestConcurrency"]) == (
        "3600s",
        1,
    )
    (found,) = _refused(_doc(spec={"timeoutSeconds": "5m"}))
    assert found == "spec.template.spec.timeoutSeconds: expected a whole number, got '5m'"


def test_a_gcsfuse_csi_volume_is_a_v2_gcs_volume_with_its_mount_options_as_a_list() -> None:
    volume = {
        "name": "data",
        "csi": {
            "driver": "gcsfuse.run.googleapis.com",
            "readOnly": True,
            "volumeAttributes": {
                "bucketName": "bucket-a",
                "mountOptions": "stat-cache-ttl=1s, implicit-dirs",
            },
        },
    }
    mount = {"name": "data", "mountPath": "/mnt/data"}
    service = _load(_doc(spec={"volumes": [volume]}, container={"volumeMounts": [mount]}))
    assert service["template"]["volumes"] == [
        {
            "name": "data",
            "gcs": {
                "bucket": "bucket-a",
                "readOnly": True,
                "mountOptions": ["stat-cache-ttl=1s", "implicit-dirs"],
            },
        }
    ]
    assert _container(service)["volumeMounts"] == [mount]


@pytest.mark.parametrize(
    ("csi", "says"),
    [
        (
            {"driver": "gcsfuse.run.googleapis.com", "volumeAttributes": {}},
            "spec.template.spec.volumes[0].csi.volumeAttributes: bucketName is required",
        ),
        (
            {
                "driver": "gcsfuse.run.googleapis.com",
                "volumeAttributes": {"bucketName": "b", "cacheMode": "x"},
            },
            "spec.template.spec.volumes[0].csi.volumeAttributes.cacheMode: unknown attribute",
        ),
        ({"driver": "pd.csi.storage.gke.io"}, "spec.template.spec.volumes[0].csi.driver: unknown CSI driver"),
    ],
    ids=["no-bucket", "unknown-attribute", "unknown-driver"],
)
def test_a_csi_volume_cloud_run_does_not_have_is_refused(csi: dict[str, Any], says: str) -> None:
    (found,) = _refused(_doc(spec={"volumes": [{"name": "data", "csi": csi}]}))
    assert found.startswith(says), found


def test_cloudsql_instances_annotation_is_a_cloud_sql_volume() -> None:
    annotations = {"run.googleapis.com/cloudsql-instances": "p1:r1:db-a, p2:r2:db-b"}
    assert _load(_doc(annotations=annotations))["template"]["volumes"] == [
        {"name": "cloudsql", "cloudSqlInstance": {"instances": ["p1:r1:db-a", "p2:r2:db-b"]}}
    ]


def test_env_plain_and_from_secret_manager() -> None:
    env = [
        {"name": "PLAIN", "value": "1"},
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db-pass", "key": "3"}}},
    ]
    assert _container(_load(_doc(container={"env": env})))["env"] == [
        {"name": "PLAIN", "value": "1"},
        {"name": "PASS", "valueSource": {"secretKeyRef": {"secret": "db-pass", "version": "3"}}},
    ]


def test_a_secret_of_another_project_is_named_through_the_secrets_annotation_aliases() -> None:
    env = [
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "shared-pass", "key": "latest"}}},
        {"name": "MINE", "valueFrom": {"secretKeyRef": {"name": "own", "key": "1"}}},
    ]
    volume = {
        "name": "certs",
        "secret": {"secretName": "shared-certs", "items": [{"key": "2", "path": "tls"}]},
    }
    aliases = "shared-pass:projects/123/secrets/pass,shared-certs:projects/123/secrets/certs"
    service = _load(
        _doc(
            annotations={"run.googleapis.com/secrets": aliases},
            spec={"volumes": [volume]},
            container={"env": env},
        )
    )
    assert [e["valueSource"]["secretKeyRef"]["secret"] for e in _container(service)["env"]] == [
        "projects/123/secrets/pass",
        "own",
    ]
    assert service["template"]["volumes"][0]["secret"] == {
        "secret": "projects/123/secrets/certs",
        "items": [{"version": "2", "path": "tls"}],
    }
    assert "annotations" not in service["template"]
    (found,) = _refused(_doc(annotations={"run.googleapis.com/secrets": "pass:other/pass"}))
    assert found == (
        f"{TEMPLATE_ANNOTATIONS}[run.googleapis.com/secrets]: 'pass:other/pass' is not "
        "ALIAS:projects/NUMBER/secrets/NAME"
    )


@pytest.mark.parametrize(
    ("container", "says"),
    [
        (
            {"env": [{"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db-pass"}}}]},
            "env[0].valueFrom.secretKeyRef.key: required: the secret's version ('latest', a number or an",
        ),
        (
            {"env": [{"name": "HOST", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]},
            "env[0].valueFrom.configMapKeyRef: unsupported source",
        ),
        ({"envFrom": [{"secretRef": {"name": "s"}}]}, "envFrom: unknown field: Cloud Run takes env entries"),
        ({"resources": {"requests": {"cpu": "1"}}}, "resources.requests: Cloud Run has no resource requests"),
        (
            {"ports": [{"containerPort": 53, "protocol": "UDP"}]},
            "ports[0].protocol: Cloud Run serves TCP only",
        ),
    ],
    ids=["secret-without-version", "configmap", "env-from", "requests", "udp"],
)
def test_a_container_field_cloud_run_cannot_hold_is_refused_at_its_path(
    container: dict[str, Any], says: str
) -> None:
    (found,) = _refused(_doc(container=container))
    assert found.startswith(f"spec.template.spec.containers[0].{says}"), found


def test_container_dependencies_annotation_is_depends_on_by_name() -> None:
    document = _doc(annotations={"run.googleapis.com/container-dependencies": '{"app": ["proxy"]}'})
    document["spec"]["template"]["spec"]["containers"] = [
        {"name": "app", "image": "us-docker.pkg.dev/p1/repo/app:v1"},
        {"name": "proxy", "image": "us-docker.pkg.dev/p1/repo/proxy:v1"},
    ]
    assert [c.get("dependsOn") for c in _load(document)["template"]["containers"]] == [["proxy"], None]
    broken = copy.deepcopy(document)
    broken["spec"]["template"]["metadata"]["annotations"]["run.googleapis.com/container-dependencies"] = (
        '{"app": ["db"]}'
    )
    assert _refused(broken) == [
        f"{TEMPLATE_ANNOTATIONS}[run.googleapis.com/container-dependencies]: names container 'db', which the "
        "template does not have"
    ]


def test_traffic_targets_with_tags() -> None:
    traffic = [
        {"latestRevision": True, "percent": 90},
        {"revisionName": "svc-a-00001-abc", "percent": 10, "tag": "canary", "url": "https://canary---svc-a"},
        {"revisionName": "svc-a-00000-old", "percent": 0, "tag": "pr-1"},
    ]
    assert _load(_with_traffic(traffic))["traffic"] == [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 90},
        {
            "type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
            "revision": "svc-a-00001-abc",
            "percent": 10,
            "tag": "canary",
        },
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "svc-a-00000-old", "tag": "pr-1"},
    ]


def _with_traffic(traffic: list[dict[str, Any]]) -> dict[str, Any]:
    document = _doc()
    document["spec"]["traffic"] = traffic
    return document


def test_service_level_fields_and_what_the_server_writes() -> None:
    document = _doc(
        service_annotations={
            "run.googleapis.com/launch-stage": "BETA",
            "run.googleapis.com/description": "the API",
            "run.googleapis.com/ingress-status": "all",
            "run.googleapis.com/operation-id": "0000",
            "serving.knative.dev/creator": "ci@p1.iam.gserviceaccount.com",
        },
        annotations={"run.googleapis.com/client-name": "gcloud", "team.example.com/owner": "a"},
    )
    document["metadata"].update(generation=7, resourceVersion="AAA", selfLink="/apis/...", uid="u-1")
    document["metadata"]["labels"]["team"] = "a"
    document["status"] = {"url": "https://svc-a-xyz-uc.a.run.app", "observedGeneration": 7, "conditions": []}
    service = _load(document)
    assert {
        key: service[key] for key in ("launchStage", "description", "creator", "generation", "uid", "uri")
    } == {
        "launchStage": "BETA",
        "description": "the API",
        "creator": "ci@p1.iam.gserviceaccount.com",
        "generation": "7",
        "uid": "u-1",
        "uri": "https://svc-a-xyz-uc.a.run.app",
    }
    assert "annotations" not in service  # the server's own are not carried
    assert service["labels"] == {"team": "a"}  # the location label is the name's region
    assert service["template"]["annotations"] == {"team.example.com/owner": "a"}


def test_every_problem_of_a_file_is_reported_at_once_with_its_path() -> None:
    document = _doc(
        service_annotations={"run.googleapis.com/ingress": "public"},
        annotations={"autoscaling.knative.dev/minScale": "-1"},
        spec={"env": [{"name": "A", "value": "1"}], "timeoutSeconds": "5m"},
        container={"imagePullPolicy": "Always"},
    )
    document["spec"]["traffic"] = [{"percent": 100}]
    assert _refused(document) == [
        "metadata.annotations[run.googleapis.com/ingress]: expected one of all, internal, "
        "internal-and-cloud-load-balancing, none, got 'public'",
        "spec.template.spec.containers[0].imagePullPolicy: unknown field",
        "spec.template.spec.timeoutSeconds: expected a whole number, got '5m'",
        "spec.template.spec.env: unknown field: env belongs to a container "
        "(spec.template.spec.containers[].env)",
        f"{TEMPLATE_ANNOTATIONS}[autoscaling.knative.dev/minScale]: expected a whole number of instances, "
        "got '-1'",
        "spec.traffic[0].revisionName: required unless latestRevision is true",
    ]


def test_a_target_both_latest_and_named_is_refused() -> None:
    (found,) = _refused(_with_traffic([{"latestRevision": True, "revisionName": "svc-a-1", "percent": 100}]))
    assert (
        found
        == "spec.traffic[0].revisionName: a target is either the latest revision or a named one, not both"
    )


def test_several_documents_are_several_services_and_a_name_twice_is_refused() -> None:
    other = _doc()
    other["metadata"]["name"] = "svc-b"
    text = yaml.safe_dump_all([_doc(), other])
    names = [service.name for service in load_seed_text(text, "services.yaml")]
    assert names == ["projects/p1/locations/r1/services/svc-a", "projects/p1/locations/r1/services/svc-b"]
    with pytest.raises(SeedError) as error:
        load_seed_text(yaml.safe_dump_all([_doc(), _doc()]), "services.yaml")
    assert (
        str(error.value) == "services.yaml: projects/p1/locations/r1/services/svc-a is given more than once"
    )


def test_a_service_without_a_place_takes_the_defaults_or_says_what_is_missing() -> None:
    document = _doc()
    del document["metadata"]["namespace"], document["metadata"]["labels"]
    (placed,) = load_seed_text(yaml.safe_dump(document), "s.yaml", project="p9", location="r9")
    assert placed.name == "projects/p9/locations/r9/services/svc-a"
    assert _refused(document) == [
        "metadata.namespace: no project: give metadata.namespace or a default project",
        "metadata.labels[cloud.googleapis.com/location]: no region: give this label or a default region",
    ]
