"""Every field case in tests/fixtures/cases (copies of the project's shared cases) through the seed loader.

A case that is a service loads with `load_seed_file`, seeds the in-process emulator and reads back through
the real client's GetService with what makes it unusual intact; a case that is not a service, or not one
Cloud Run would take, is refused with every problem named at once, each at its path. The gcloud cases hold
command lines beside what their author expected: each command line is also loaded on its own, and compared
with the expectation where the documented behaviour agrees with it (a comment says where it does not).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import launch_stage_pb2
from google.cloud import run_v2

from emulator import Emulator, SeedError, load_seed_file, load_seed_text
from tests.conftest import ROOT

CASES = Path(__file__).parent / "fixtures" / "cases"
SHARED = ROOT.parent / "shared" / "cases"  # beside the clone in CI; the tests read only the copies
PROJECT, REGION = "demo-project", "us-central1"
RESERVED = (
    "run.googleapis.com/",
    "cloud.googleapis.com/",
    "serving.knative.dev/",
    "autoscaling.knative.dev/",
)
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
PINNED = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
GEN1 = run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN1
GEN2 = run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2
UNSPECIFIED = run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_UNSPECIFIED
MEMORY = run_v2.EmptyDirVolumeSource.Medium.MEMORY


def _case(stem: str) -> Path:
    return CASES / f"{stem}.yaml"


def _read_back(emulator: Emulator, client: run_v2.ServicesClient, services: list[Any]) -> run_v2.Service:
    (service,) = services
    emulator.seed(services)
    return client.get_service(name=service.name)


def _problems(error: pytest.ExceptionInfo[SeedError], source: Path | str) -> list[str]:
    """The error's lines without the file name each starts with."""
    lines = str(error.value).splitlines()
    assert all(line.startswith(f"{source}: ") for line in lines), lines
    return [line.removeprefix(f"{source}: ") for line in lines]


def _launch_stage(service: run_v2.Service) -> str:
    return launch_stage_pb2.LaunchStage.Name(service.launch_stage)


def _no_reserved_keys(service: run_v2.Service) -> None:
    """What gcloud or the server writes for itself is not carried as a label or annotation."""
    for keys in (service.labels, service.annotations, service.template.labels, service.template.annotations):
        assert not [key for key in keys if key.startswith(RESERVED)], dict(keys)


def _scaling(service: run_v2.Service) -> tuple[int, int]:
    """Revision-level (min, max) instances."""
    return service.template.scaling.min_instance_count, service.template.scaling.max_instance_count


def _by_name(service: run_v2.Service) -> dict[str, run_v2.Container]:
    return {container.name: container for container in service.template.containers}


def _argv(stem: str, key: str) -> list[str]:
    words = yaml.safe_load(_case(stem).read_text())[key]
    assert isinstance(words, list)
    return words


def _load_words(words: list[str]) -> list[Any]:
    return load_seed_text(
        yaml.safe_dump({"gcloud_argv": words}), "argv.yaml", project=PROJECT, location=REGION
    )


# --- the cases that are services ------------------------------------------------------------------------


def _canary_traffic_split(service: run_v2.Service) -> None:
    assert [(t.type_, t.percent, t.revision) for t in service.traffic] == [
        (LATEST, 50, ""),
        (PINNED, 50, "svc-a-00041-abc"),
    ]
    assert [(s.percent, s.revision) for s in service.traffic_statuses][1] == (50, "svc-a-00041-abc")
    (container,) = service.template.containers
    assert container.name == "svc-a-1"
    assert dict(container.resources.limits) == {"cpu": "1000m", "memory": "512Mi"}
    assert container.resources.cpu_idle and container.resources.startup_cpu_boost
    assert _scaling(service) == (0, 100)
    assert service.template.timeout.total_seconds() == 300
    assert service.template.max_instance_request_concurrency == 80
    probe = container.startup_probe
    assert (probe.tcp_socket.port, probe.period_seconds, probe.timeout_seconds, probe.failure_threshold) == (
        8080,
        240,
        240,
        1,
    )
    assert service.template.service_account == "123456789012-compute@developer.gserviceaccount.com"
    assert service.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL
    _no_reserved_keys(service)  # client-name, client-version, ingress-status, startupProbeType: gone


def _sidecar_dependencies(service: run_v2.Service) -> None:
    containers = _by_name(service)
    assert list(containers) == ["app", "sidecar-a"]
    app, sidecar = containers["app"], containers["sidecar-a"]
    assert [port.container_port for port in app.ports] == [8080] and not sidecar.ports
    assert list(sidecar.depends_on) == ["app"] and not app.depends_on
    (scratch,) = service.template.volumes
    assert (scratch.name, scratch.empty_dir.medium, scratch.empty_dir.size_limit) == (
        "scratch",
        MEMORY,
        "256Mi",
    )
    for container in (app, sidecar):
        assert [(m.name, m.mount_path) for m in container.volume_mounts] == [("scratch", "/scratch")]
    assert service.template.execution_environment == GEN1
    assert _launch_stage(service) == "ALPHA"
    assert (app.startup_probe.http_get.path, app.liveness_probe.http_get.path) == ("/ready", "/alive")
    assert app.startup_probe.http_get.port == 8080
    _no_reserved_keys(service)


def _v2_depends_on(service: run_v2.Service) -> None:
    containers = _by_name(service)
    assert list(containers) == ["app", "helper"]
    assert list(containers["app"].depends_on) == ["helper"]
    assert not containers["helper"].ports and not containers["helper"].volume_mounts
    (scratch,) = service.template.volumes
    assert (scratch.empty_dir.medium, scratch.empty_dir.size_limit) == (MEMORY, "128Mi")
    assert _launch_stage(service) == "BETA"


def _v2_gcs_volume(service: run_v2.Service) -> None:
    (data,) = service.template.volumes
    assert (data.name, data.gcs.bucket, data.gcs.read_only) == ("data", "bucket-a", False)
    (container,) = service.template.containers
    assert [(m.name, m.mount_path) for m in container.volume_mounts] == [("data", "/mnt/data")]
    assert service.template.execution_environment == GEN2
    # no scaling given: the server's default of 100, neither unlimited nor 0
    assert _scaling(service) == (0, 100)
    assert _launch_stage(service) == "BETA"


def _server_annotations(service: run_v2.Service) -> None:
    assert service.name == "projects/123456789012/locations/us-central1/services/svc-a"  # namespace: a number
    assert list(service.urls) == [
        "https://svc-a-123456789012.us-central1.run.app",
        "https://svc-a-abcdefghij-uc.a.run.app",
    ]
    assert service.uri == "https://svc-a-abcdefghij-uc.a.run.app"
    assert service.creator == "ci-deployer@demo-project.iam.gserviceaccount.com"
    assert service.last_modifier == "person-a@example.com"
    assert (service.client, service.client_version) == ("gcloud", "999.0.1")
    assert dict(service.labels) == {
        "commit-sha": "0000000000000000000000000000000000000000",
        "managed-by": "github-actions",
    }
    assert service.generation == 233 and service.create_time.year == 2024
    assert service.template.timeout.total_seconds() == 3600
    (container,) = service.template.containers
    assert container.resources.cpu_idle is False  # cpu-throttling "false": CPU always allocated
    assert _scaling(service) == (1, 1)
    assert service.template.execution_environment == GEN2
    assert [(e.name, e.value) for e in container.env] == [("DATABASE_URL", "sqlite:////mnt/data/app.db")]
    assert container.image.endswith("@sha256:" + "0" * 64)
    _no_reserved_keys(service)


SERVICES: dict[str, Callable[[run_v2.Service], None]] = {
    "01-knative-canary-traffic-split": _canary_traffic_split,
    "02-knative-sidecar-container-dependencies": _sidecar_dependencies,
    "03-v2-multicontainer-depends-on": _v2_depends_on,
    "04-v2-gcs-volume-gen2-no-scaling": _v2_gcs_volume,
    "06-v1-gcloud-deploy-json-server-annotations": _server_annotations,
}


@pytest.mark.parametrize("stem", sorted(SERVICES))
def test_a_service_case_loads_and_reads_back_with_its_unusual_parts(
    stem: str, emulator: Emulator, client: run_v2.ServicesClient
) -> None:
    services = load_seed_file(_case(stem), project=PROJECT, location=REGION)
    SERVICES[stem](_read_back(emulator, client, services))


# --- the cases that are refused, whole --------------------------------------------------------------------

REFUSED: dict[str, list[tuple[str, str]]] = {
    "07-update-traffic-rows-with-zero-percent-tag": [
        ("", "traffic rows (as `gcloud run services update-traffic --format=json` prints them)"),
    ],
    "08-gcloud-args-sqlite-on-gcsfuse-no-max": [
        ("gcloud_argv[5]", "unknown flag --add-gcs-bucket: a Cloud Storage volume is --add-volume="),
        ("gcloud_argv[6]", "unknown flag --gcs-fuse-flags: gcsfuse flags go in --add-volume as mount-"),
        ("expected_live_service", "not a command line"),
    ],
    "09-gcloud-args-litestream-cpu-throttling-conflict": [
        ("variant_a_argv[9]", "--cpu-throttling given with opposite values (--cpu-throttling at"),
        ("variant_b_expected_template_annotations", "not a command line"),
        ("env_in_both_variants", "not a command line"),
    ],
    "10-knative-env-misplaced-and-configmapref": [
        ("spec.template.spec.env", "unknown field: env belongs to a container"),
        ("spec.template.spec.env[0].valueFrom.configMapKeyRef", "unsupported source"),
    ],
}


@pytest.mark.parametrize("stem", sorted(REFUSED))
def test_a_case_that_is_not_a_service_cloud_run_takes_is_refused_with_every_problem_at_its_path(
    stem: str,
) -> None:
    path = _case(stem)
    with pytest.raises(SeedError) as error:
        load_seed_file(path, project=PROJECT, location=REGION)
    problems = _problems(error, path)
    assert len(problems) == len(REFUSED[stem]), problems
    for problem, (where, says) in zip(problems, REFUSED[stem], strict=True):
        assert problem.startswith(f"{where}: {says}" if where else says), problem


def test_every_case_is_either_a_service_or_refused_and_the_copies_match_the_shared_cases() -> None:
    stems = {path.stem for path in CASES.glob("*.yaml")}
    assert stems == set(SERVICES) | set(REFUSED)
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not beside this checkout: the copies cannot be compared")
    shared = {path.stem: path.read_text() for path in SHARED.glob("*.yaml")}
    assert {stem: text for stem, text in shared.items() if stem in stems} == {
        stem: _case(stem).read_text() for stem in stems
    }
    assert set(shared) <= stems, f"new shared cases to copy and test: {sorted(set(shared) - stems)}"


# --- the command lines in the gcloud cases, one at a time -------------------------------------------------

GCSFUSE = "08-gcloud-args-sqlite-on-gcsfuse-no-max"
LITESTREAM = "09-gcloud-args-litestream-cpu-throttling-conflict"


def _documented_spelling(words: list[str]) -> list[str]:
    """Case 08's command with its bucket flags as gcloud spells them: `--add-volume` with mount-options
    (semicolons; a beta flag) and `--add-volume-mount`."""
    bucket = dict(part.split("=", 1) for part in words[5].split("=", 1)[1].split(","))
    options = words[6].split("=", 1)[1].replace(",", ";")
    return [
        "beta",
        *words[:5],
        f"--add-volume=name={bucket['name']},type=cloud-storage,bucket={bucket['bucket']},mount-options={options}",
        f"--add-volume-mount=volume={bucket['name']},mount-path={bucket['path']}",
        *words[7:],
    ]


def test_case_08_spelled_as_gcloud_has_it_holds_the_service_its_author_expected(
    emulator: Emulator, client: run_v2.ServicesClient
) -> None:
    case = yaml.safe_load(_case(GCSFUSE).read_text())
    expected = load_seed_text(
        yaml.safe_dump(case["expected_live_service"]), "expected", project=PROJECT, location=REGION
    )
    deployed = _read_back(emulator, client, _load_words(_documented_spelling(case["gcloud_argv"])))
    (volume,) = deployed.template.volumes
    assert list(volume.gcs.mount_options) == [
        "write-global-max-blocks=1024",
        "experimental-enable-rapid-appends",
        "stat-cache-ttl=1s",
        "type-cache-ttl=1s",
    ]
    assert (volume.name, volume.gcs.bucket, volume.gcs.read_only) == ("gcs", "bucket-a", False)
    (want,) = expected
    assert [run_v2.Volume.pb(v) for v in deployed.template.volumes] == list(want.template.volumes)
    (container,) = deployed.template.containers
    (expected_container,) = want.template.containers
    assert container.image == expected_container.image
    assert [(e.name, e.value) for e in container.env] == [(e.name, e.value) for e in expected_container.env]
    assert [(m.name, m.mount_path) for m in container.volume_mounts] == [
        (m.name, m.mount_path) for m in expected_container.volume_mounts
    ]
    # No max instances and no CPU flag: the server's defaults (100; throttled).
    assert deployed.template.scaling.max_instance_count == 100 and container.resources.cpu_idle
    # The case expects gen2 "forced by the volume type"; the documented behaviour wins: a service that names
    # no execution environment has none in its spec, and Cloud Run picks one by the features it uses
    # (cloud.google.com/run/docs/about-execution-environments). gcloud adds none either.
    assert want.template.execution_environment == GEN2
    assert deployed.template.execution_environment == UNSPECIFIED


def test_case_08_mount_options_need_gcloud_beta() -> None:
    words = _documented_spelling(_argv(GCSFUSE, "gcloud_argv"))[1:]  # the same, under GA gcloud
    with pytest.raises(SeedError) as error:
        _load_words(words)
    assert _problems(error, "argv.yaml") == [
        "gcloud_argv[5]: a cloud-storage volume takes mount-options only under `gcloud beta|alpha run deploy`"
    ]


def test_case_09_contradictory_throttling_is_refused_and_the_other_variant_holds_its_annotations(
    emulator: Emulator, client: run_v2.ServicesClient
) -> None:
    with pytest.raises(SeedError) as error:
        _load_words(_argv(LITESTREAM, "variant_a_argv"))
    (problem,) = _problems(error, "argv.yaml")
    assert problem.startswith("gcloud_argv[9]: --cpu-throttling given with opposite values")
    assert "a seed refuses to guess" in problem

    deployed = _read_back(emulator, client, _load_words(_argv(LITESTREAM, "variant_b_argv")))
    annotations = yaml.safe_load(_case(LITESTREAM).read_text())["variant_b_expected_template_annotations"]
    knative = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "svc-a", "labels": {"cloud.googleapis.com/location": "us-west1"}},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [{"image": deployed.template.containers[0].image}]},
            }
        },
    }
    (expected,) = load_seed_text(yaml.safe_dump(knative), "expected", project=PROJECT, location=REGION)
    assert deployed.name == "projects/demo-project/locations/us-west1/services/svc-a"
    assert _scaling(deployed) == (1, 1)
    assert _scaling(deployed) == (
        expected.template.scaling.min_instance_count,
        expected.template.scaling.max_instance_count,
    )
    assert deployed.template.execution_environment == expected.template.execution_environment == GEN2
    assert deployed.template.containers[0].resources.cpu_idle is True  # cpu-throttling "true"
    assert expected.template.containers[0].resources.cpu_idle is True
    assert _launch_stage(deployed) == "BETA"  # `gcloud beta run deploy`
