"""deploy/: the controller's own Cloud Run service and the script that creates it, checked without Google.

The service definition is parsed and held to what the controller needs (one always-on instance, CPU
between requests, internal ingress, no unauthenticated access, its own account, the desired file on a
read-only Cloud Storage volume where the image looks for it). The script is shellcheck-clean, and run
as written with recording stand-ins for `gcloud` (tests/recorders.py): every command it issues is one
the gcloud reference lists, with flags it lists, and what it grants and deploys is what IAM.md says.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.recorders import Recorded, environment, install, recorded, unknown_gcloud_usage
from tests.test_image import dockerfile_stages, image_env

SERVICE = ROOT / "deploy" / "service.yaml"
SETUP = ROOT / "deploy" / "setup.sh"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
VALUES = {
    "PROJECT_ID": "demo-project",
    "IMAGE": "us-central1-docker.pkg.dev/demo-project/cloudrun-reconciler/cloudrun-reconciler:0.1.0",
    "CONFIG_BUCKET": "demo-project-cloudrun-reconciler",
    "CONTROLLER_ARGS": "",
}


def rendered(text: str, values: dict[str, str] = VALUES) -> Any:
    return yaml.safe_load(PLACEHOLDER.sub(lambda match: values[match.group(1)], text))


def shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    assert SHELLCHECK.exists(), f"no {SHELLCHECK}: install the test extra (pip install -e '.[test]')"
    return subprocess.run(
        [str(SHELLCHECK), "--severity=style", "--shell=bash", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_service_runs_exactly_one_always_on_instance() -> None:
    template = rendered(SERVICE.read_text())["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/minScale"] == "1"
    assert annotations["autoscaling.knative.dev/maxScale"] == "1"
    assert annotations["run.googleapis.com/cpu-throttling"] == "false"  # CPU always allocated
    assert all(isinstance(value, str) for value in annotations.values()), "annotations are strings"
    limits = template["spec"]["containers"][0]["resources"]["limits"]
    assert float(limits["cpu"]) >= 1, "CPU always allocated needs at least 1 vCPU"


def test_the_service_is_internal_and_admits_no_unauthenticated_caller() -> None:
    service = rendered(SERVICE.read_text())
    assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
    assert service["metadata"]["annotations"]["run.googleapis.com/ingress"] == "internal"
    text = SERVICE.read_text()
    assert "invoker-iam-disabled" not in text and "allUsers" not in text


def test_the_service_runs_as_its_own_account() -> None:
    spec = rendered(SERVICE.read_text())["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "cloudrun-reconciler@demo-project.iam.gserviceaccount.com"


def test_the_desired_file_is_on_a_read_only_bucket_volume_where_the_image_looks() -> None:
    spec = rendered(SERVICE.read_text())["spec"]["template"]["spec"]
    (volume,) = spec["volumes"]
    assert volume["csi"]["driver"] == "gcsfuse.run.googleapis.com"
    assert volume["csi"]["readOnly"] is True
    assert volume["csi"]["volumeAttributes"]["bucketName"] == VALUES["CONFIG_BUCKET"]
    # without the metadata cache, each 3 s poll sees the object as CI last wrote it, not a 60 s old copy
    assert "metadata-cache-ttl-secs=0" in volume["csi"]["volumeAttributes"]["mountOptions"].split(",")
    (container,) = spec["containers"]
    (mount,) = container["volumeMounts"]
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    image = image_env(dockerfile_stages()[-1])
    assert env["DESIRED_STATE_FILE"] == image["DESIRED_STATE_FILE"]
    assert mount["name"] == volume["name"]
    assert str(Path(env["DESIRED_STATE_FILE"]).parent) == mount["mountPath"]


def test_the_port_and_probes_are_the_ones_the_controller_serves() -> None:
    (container,) = rendered(SERVICE.read_text())["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    assert str(port["containerPort"]) == image_env(dockerfile_stages()[-1])["PORT"]
    endpoints = (ROOT / "controller" / "endpoints.py").read_text()
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port["containerPort"]
        assert f'"{container[probe]["httpGet"]["path"]}"' in endpoints


def test_the_controller_flag_renders_as_an_argument_list() -> None:
    plain = rendered(SERVICE.read_text())
    managed = rendered(SERVICE.read_text(), {**VALUES, "CONTROLLER_ARGS": '"--manage-log-metric"'})
    assert plain["spec"]["template"]["spec"]["containers"][0]["args"] == []
    assert managed["spec"]["template"]["spec"]["containers"][0]["args"] == ["--manage-log-metric"]


def test_setup_fills_in_every_placeholder_of_the_service() -> None:
    placeholders = set(PLACEHOLDER.findall(SERVICE.read_text()))
    assert placeholders == set(VALUES)
    script = SETUP.read_text()
    for name in placeholders:
        assert f"\\$\\{{{name}\\}}" in script, f"setup.sh never fills in ${{{name}}}"


def test_setup_is_shellcheck_clean(tmp_path: Path) -> None:
    result = shellcheck(SETUP)
    assert result.returncode == 0, result.stdout + result.stderr
    # the same check on a script with an unquoted expansion fails: proof that it looked
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/tmp\n")
    assert "SC2086" in shellcheck(bad).stdout


def run_setup(tmp_path: Path, **settings: str) -> tuple[subprocess.CompletedProcess[str], list[Recorded]]:
    """deploy/setup.sh as written, with `gcloud` recorded and the real `cloudrun-reconciler`."""
    log = install(tmp_path / "bin", "gcloud")
    values = {
        "PROJECT_ID": "demo-project",
        "REGION": "us-central1",
        "RUNTIME_SERVICE_ACCOUNTS": "123-compute@developer.gserviceaccount.com "
        "agents@demo-project.iam.gserviceaccount.com",
        "DESIRED_FILE": str(ROOT / "desired-state.yaml"),
        **settings,
    }
    result = subprocess.run(
        ["bash", str(SETUP)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=environment(tmp_path / "bin", log, **values),
    )
    return result, recorded(log)


def _granted(calls: list[Recorded]) -> set[tuple[str, str, str]]:
    """(resource, member, role) of every IAM binding the script added."""
    bindings = set()
    for call in calls:
        if "add-iam-policy-binding" in call.args:
            resource = call.args[call.args.index("add-iam-policy-binding") + 1]
            options = dict(arg[2:].split("=", 1) for arg in call.args if arg.startswith("--") and "=" in arg)
            bindings.add((resource, options["member"], options["role"]))
    return bindings


def test_setup_creates_grants_uploads_builds_and_deploys(tmp_path: Path) -> None:
    result, calls = run_setup(tmp_path, MANAGE_LOG_METRIC="1", WITH_CI="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert unknown_gcloud_usage(calls) == []
    controller = "serviceAccount:cloudrun-reconciler@demo-project.iam.gserviceaccount.com"
    assert _granted(calls) == {
        ("demo-project", controller, "projects/demo-project/roles/cloudrunReconciler"),
        ("demo-project", controller, "projects/demo-project/roles/cloudrunReconcilerLogMetrics"),
        (
            "projects/-/serviceAccounts/123-compute@developer.gserviceaccount.com",
            controller,
            "roles/iam.serviceAccountUser",
        ),
        (
            "projects/-/serviceAccounts/agents@demo-project.iam.gserviceaccount.com",
            controller,
            "roles/iam.serviceAccountUser",
        ),
        ("gs://demo-project-cloudrun-reconciler", controller, "roles/storage.objectViewer"),
        (
            "demo-project",
            "serviceAccount:cloudrun-reconciler-plan@demo-project.iam.gserviceaccount.com",
            "projects/demo-project/roles/cloudrunReconcilerPlanner",
        ),
        (
            "gs://demo-project-cloudrun-reconciler",
            "serviceAccount:cloudrun-reconciler-sync@demo-project.iam.gserviceaccount.com",
            "roles/storage.objectUser",
        ),
    }
    created_roles = {
        (call.args[3], Path(next(iter(call.files))).name)
        for call in calls
        if call.command == ("iam", "roles", "create")
    }
    assert created_roles == {
        ("cloudrunReconciler", "controller-role.yaml"),
        ("cloudrunReconcilerLogMetrics", "log-metric-writer-role.yaml"),
        ("cloudrunReconcilerPlanner", "planner-role.yaml"),
    }
    (upload,) = [call for call in calls if call.command == ("storage", "cp")]
    assert upload.args[-1] == "gs://demo-project-cloudrun-reconciler/desired-state.yaml"
    assert upload.files[upload.args[2]] == (ROOT / "desired-state.yaml").read_text()
    (deploy,) = [call for call in calls if call.command == ("run", "services", "replace")]
    service = yaml.safe_load(next(iter(deploy.files.values())))
    container = service["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--manage-log-metric"]
    assert container["image"].endswith("/cloudrun-reconciler:0.1.0")
    assert "${" not in next(iter(deploy.files.values()))
    order = [call.command for call in calls]
    assert order.index(("storage", "cp")) < order.index(("run", "services", "replace"))
    assert order.index(("builds", "submit")) < order.index(("run", "services", "replace"))


def test_setup_without_manage_log_metric_grants_no_metric_writes(tmp_path: Path) -> None:
    result, calls = run_setup(tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any("LogMetrics" in role for _, _, role in _granted(calls))
    assert not any("plan@" in member or "sync@" in member for _, member, _ in _granted(calls))
    (deploy,) = [call for call in calls if call.command == ("run", "services", "replace")]
    assert (
        yaml.safe_load(next(iter(deploy.files.values())))["spec"]["template"]["spec"]["containers"][0]["args"]
        == []
    )


def test_setup_run_again_creates_nothing_and_brings_the_roles_up_to_date(tmp_path: Path) -> None:
    result, calls = run_setup(tmp_path, RECORDER_EXISTS="1", MANAGE_LOG_METRIC="1")
    assert result.returncode == 0, result.stderr
    assert unknown_gcloud_usage(calls) == []
    assert not [
        call.args for call in calls if call.args[2:3] == ["create"] or call.args[1:3] == ["buckets", "create"]
    ]
    updates = {
        call.args[3]: set(
            next(a for a in call.args if a.startswith("--permissions=")).split("=", 1)[1].split(",")
        )
        for call in calls
        if call.command == ("iam", "roles", "update")
    }
    files = {
        "cloudrunReconciler": "controller-role.yaml",
        "cloudrunReconcilerLogMetrics": "log-metric-writer-role.yaml",
    }
    assert updates == {
        role: set(yaml.safe_load((SETUP.parent / "iam" / name).read_text())["includedPermissions"])
        for role, name in files.items()
    }


def test_setup_refuses_an_invalid_desired_file_before_touching_google(tmp_path: Path) -> None:
    bad = tmp_path / "desired.yaml"
    bad.write_text("apiVersion: nope\n")
    result, calls = run_setup(tmp_path, DESIRED_FILE=str(bad))
    assert result.returncode == 1
    assert "CR005" in result.stdout + result.stderr and calls == []


@pytest.mark.parametrize("missing", ["PROJECT_ID", "REGION"])
def test_setup_names_a_missing_setting(tmp_path: Path, missing: str) -> None:
    result, calls = run_setup(tmp_path, **{missing: ""})
    assert result.returncode != 0 and missing in result.stderr and calls == []
