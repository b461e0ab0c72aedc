"""The worked GitOps flow, examples/github-actions/desired-state.yml: its shell scripts run as written.

Each `run:` block is shellchecked as the bash GitHub runs it with; none interpolates `${{ }}` into the
script (inputs come through `env:`, so a pull request cannot inject shell). The plan step's script then
runs for real: `cloudrun-reconciler plan --output json` against the emulator, with a recording `gh`
(tests/recorders.py), and does what the workflow promises for each exit code: 2 posts the changes as a
comment, 0 posts nothing, 1 fails the step. The sync step's `gcloud storage cp` writes the object the
controller's volume serves as its desired file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator import Emulator
from tests.conftest import ROOT, as_found_services
from tests.processes import COMMAND
from tests.recorders import Recorded, environment, install, recorded, unknown_gcloud_usage
from tests.test_deploy import SERVICE, rendered, shellcheck

WORKFLOW = ROOT / "examples" / "github-actions" / "desired-state.yml"
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def workflow() -> dict[Any, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(document, dict)
    return document


def steps(job: str) -> list[dict[str, Any]]:
    return list(workflow()["jobs"][job]["steps"])


def step(job: str, name: str) -> dict[str, Any]:
    (found,) = [s for s in steps(job) if s.get("name") == name]
    return found


def run_blocks() -> list[tuple[str, str]]:
    return [
        (f"{job}: {s.get('name', s.get('uses'))}", s["run"])
        for job, body in workflow()["jobs"].items()
        for s in body["steps"]
        if "run" in s
    ]


def test_the_workflow_plans_pull_requests_and_syncs_merges() -> None:
    document = workflow()
    triggers = document.get("on", document.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request", "push"} and triggers["push"]["branches"] == ["main"]
    jobs = document["jobs"]
    assert jobs["plan"]["if"] == "github.event_name == 'pull_request'"
    assert jobs["sync"]["if"] == "github.event_name == 'push'"
    assert jobs["plan"]["permissions"]["pull-requests"] == "write"
    assert "pull-requests" not in jobs["sync"]["permissions"]
    names = [s.get("name", s.get("uses")) for s in steps("sync")]
    assert names.index("Validate") < names.index("Sync to the controller's bucket"), "never sync a bad file"
    planner = next(s for s in steps("plan") if "auth" in str(s.get("uses")))["with"]["service_account"]
    syncer = next(s for s in steps("sync") if "auth" in str(s.get("uses")))["with"]["service_account"]
    assert planner != syncer, "the pull request's identity cannot write the bucket"


@pytest.mark.parametrize(("where", "script"), run_blocks(), ids=[where for where, _ in run_blocks()])
def test_each_script_takes_its_inputs_from_env_and_is_shellcheck_clean(
    where: str, script: str, tmp_path: Path
) -> None:
    assert not EXPRESSION.search(script), f"{where}: pass ${{{{ }}}} values through env:, not the script"
    path = tmp_path / "step.sh"
    path.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + script)  # GitHub's `bash -e` on Linux
    result = shellcheck(path)
    assert result.returncode == 0, f"{where}\n{result.stdout}"


def _step_env(job: str, name: str, **values: str) -> dict[str, str]:
    """The step's env: the workflow's and the step's own, with `${{ }}` replaced by the given values."""
    merged = {**workflow().get("env", {}), **step(job, name).get("env", {})}
    return {
        key: EXPRESSION.sub("", str(value)) or values.get(key, "") for key, value in merged.items()
    } | values


def run_step(
    tmp_path: Path, job: str, name: str, **values: str
) -> tuple[subprocess.CompletedProcess[str], list[Recorded]]:
    """A step's script in a checkout holding desired-state.yaml, with `gh` and `gcloud` recorded."""
    checkout = tmp_path / "checkout"
    checkout.mkdir(exist_ok=True)
    if not (checkout / "desired-state.yaml").exists():
        shutil.copy2(ROOT / "desired-state.yaml", checkout / "desired-state.yaml")
    log = install(tmp_path / "bin", "gh", "gcloud")
    log.write_text("")
    result = subprocess.run(
        ["bash", "-e", "-c", step(job, name)["run"]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=checkout,
        env=environment(tmp_path / "bin", log, **_step_env(job, name, **values)),
    )
    return result, recorded(log)


@pytest.fixture
def seeded() -> Any:
    with Emulator() as server:
        server.seed(as_found_services())
        yield server


needs_jq = pytest.mark.skipif(shutil.which("jq") is None, reason="jq (on GitHub's runners) is not installed")


@needs_jq
def test_a_drifted_plan_becomes_a_comment_on_the_pull_request(seeded: Emulator, tmp_path: Path) -> None:
    result, calls = run_step(
        tmp_path, "plan", "Plan", CLOUD_RUN_EMULATOR_HOST=seeded.address, PR_NUMBER="7", GH_TOKEN="token"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (comment,) = [call for call in calls if call.tool == "gh"]
    assert comment.args[:3] == ["pr", "comment", "7"] and comment.args[3] == "--body-file"
    body = comment.files[comment.args[4]]
    assert body.startswith("### cloudrun-reconciler plan")
    assert "**cagent-api** (demo-project, us-central1): Drifted, a new revision" in body
    assert "- `template.timeout`: `300` → `3600`" in body
    assert "- `scaling.max_instance_count`: `null` → `10`" in body
    assert "warning CR104" in body  # an unacknowledged warning of the desired file


@needs_jq
def test_an_in_sync_plan_posts_nothing(seeded: Emulator, tmp_path: Path) -> None:
    applied = subprocess.run(
        [*COMMAND, "apply", "-f", str(ROOT / "desired-state.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(tmp_path, tmp_path / "unused.log", CLOUD_RUN_EMULATOR_HOST=seeded.address),
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    result, calls = run_step(
        tmp_path, "plan", "Plan", CLOUD_RUN_EMULATOR_HOST=seeded.address, PR_NUMBER="7", GH_TOKEN="token"
    )
    assert result.returncode == 0, result.stderr
    assert "In sync" in result.stdout and calls == []


@needs_jq
def test_a_plan_that_cannot_be_made_fails_the_step_and_says_why(seeded: Emulator, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    text = (ROOT / "desired-state.yaml").read_text().replace("- name: cagent-api", "- name: not-deployed")
    (checkout / "desired-state.yaml").write_text(text)
    result, calls = run_step(
        tmp_path, "plan", "Plan", CLOUD_RUN_EMULATOR_HOST=seeded.address, PR_NUMBER="7", GH_TOKEN="token"
    )
    assert result.returncode == 1
    assert "not-deployed: Missing: service not found" in result.stdout and calls == []


@needs_jq
def test_an_unreachable_api_fails_the_step_with_the_reason(tmp_path: Path) -> None:
    result, calls = run_step(
        tmp_path, "plan", "Plan", CLOUD_RUN_EMULATOR_HOST="127.0.0.1:9", PR_NUMBER="7", GH_TOKEN="token"
    )
    assert result.returncode == 1 and "nothing answers at 127.0.0.1:9" in result.stdout and calls == []


def test_validate_fails_the_job_on_an_invalid_file(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "desired-state.yaml").write_text("apiVersion: nope\n")
    result, _ = run_step(tmp_path, "sync", "Validate")
    assert result.returncode == 1 and "CR005" in result.stdout + result.stderr


def test_a_merge_writes_the_object_the_controller_reads(tmp_path: Path) -> None:
    result, calls = run_step(
        tmp_path, "sync", "Sync to the controller's bucket", CONFIG_BUCKET="demo-project-cloudrun-reconciler"
    )
    assert result.returncode == 0, result.stderr
    assert unknown_gcloud_usage(calls) == []
    (copy,) = calls
    assert (
        copy.args[:2] == ["storage", "cp"]
        and copy.files[copy.args[2]] == (ROOT / "desired-state.yaml").read_text()
    )
    spec = rendered(SERVICE.read_text())["spec"]["template"]["spec"]
    (volume,) = spec["volumes"]
    desired_path = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}["DESIRED_STATE_FILE"]
    bucket = volume["csi"]["volumeAttributes"]["bucketName"]
    assert copy.args[3] == f"gs://{bucket}/{Path(desired_path).name}"
