"""The command line as a user runs it: the installed console script, real processes, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.processes import COMMAND, SEED
from tests.processes import standalone as _standalone


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def standalone_emulator() -> Iterator[str]:
    """The standalone emulator, seeded from the demo's file; yields host:port."""
    with _standalone("--seed", str(SEED)) as (address, _):
        yield address


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "desired.yaml"
    path.write_text(text)
    return path


def test_validate_accepts_the_root_file() -> None:
    result = run("validate", "desired-state.yaml")
    assert result.returncode == 0, result.stderr
    assert "desired-state.yaml: valid (1 service(s)" in result.stdout
    assert (
        "CR201" in result.stdout and "[acknowledged: maxInstances 10 is the runbook's value" in result.stdout
    )


@pytest.mark.parametrize(
    ("body", "position", "field"),
    [
        ("    timeoutt: 1h\n", ":4:5 CR002 ", "services[0].timeoutt: unknown field; did you mean 'timeout'?"),
        (
            "    timeout: 4000s\n",
            ":4:14 CR010 ",
            "services[0].timeout: must be between 1s and 3600s (Cloud Run's maximum), got 4000s",
        ),
        (
            "    scaling: {level: service, minInstances: 3, maxInstances: 2}\n",
            ":4:62 CR011 ",
            "services[0].scaling.maxInstances: maxInstances (2) is below minInstances (3)",
        ),
    ],
)
def test_validate_reports_file_line_column_and_field(
    tmp_path: Path, body: str, position: str, field: str
) -> None:
    path = write(
        tmp_path,
        f"defaults: {{project: demo-project, region: us-central1}}\nservices:\n  - name: cagent-api\n{body}",
    )
    result = run("validate", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"{path}{position}{field}", f"{path}: 1 error(s); not loaded"]
    assert "Traceback" not in result.stderr + result.stdout


def test_plan_is_2_while_drifted_and_0_once_applied(standalone_emulator: str) -> None:
    env = {"CLOUD_RUN_EMULATOR_HOST": standalone_emulator}
    drifted = run("plan", env=env)
    assert drifted.returncode == 2, drifted.stderr
    assert "template.timeout" in drifted.stdout and "300s → 3600s" in drifted.stdout

    applied = run("apply", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "applied  cagent-api" in applied.stdout

    clean = run("plan", "--output", "json", env=env)
    assert clean.returncode == 0, clean.stderr
    document = json.loads(clean.stdout)
    assert document["exit_code"] == 0
    assert [(s["name"], s["status"], s["changes"]) for s in document["services"]] == [
        ("cagent-api", "InSync", [])
    ]


def test_plan_json_lists_each_change_with_old_and_new(standalone_emulator: str) -> None:
    result = run("plan", "-o", "json", env={"CLOUD_RUN_EMULATOR_HOST": standalone_emulator})
    assert result.returncode == 2
    (service,) = json.loads(result.stdout)["services"]
    changes = {change["path"]: (change["old"], change["new"]) for change in service["changes"]}
    assert changes["template.timeout"] == (300.0, 3600)
    assert changes["scaling.max_instance_count"] == (None, 10)
    assert service["creates_revision"] is True


def test_plan_with_an_unreachable_api_is_exit_1_with_a_reason(tmp_path: Path) -> None:
    result = run("plan", env={"CLOUD_RUN_EMULATOR_HOST": "127.0.0.1:9"})
    assert result.returncode == 1
    assert "nothing answers at 127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_emulator_address_is_refused_before_any_call() -> None:
    result = run("plan", env={"CLOUD_RUN_EMULATOR_HOST": "http://127.0.0.1:8085"})
    assert result.returncode == 1
    assert "must be host:port" in result.stderr


def test_plan_on_an_invalid_file_is_exit_1_and_contacts_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "services:\n  - name: cagent-api\n    timeout: 1d\n")
    result = run("plan", "--file", str(path), env={"CLOUD_RUN_EMULATOR_HOST": "127.0.0.1:9"})
    assert result.returncode == 1
    assert f"{path}:3:14 CR001 services[0].timeout:" in result.stderr


def test_the_demo_shows_drift_applies_and_ends_in_sync() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for fragment in (
        "scaling.min_instance_count",
        "scaling.max_instance_count",
        "template.timeout",
        "resources.cpu_idle",
        "env[DATABASE_URL]",
        "(exit code 2)",
        "applied  cagent-api",
        "(exit code 0)",
        "healed: the deploy's timeout reset",
        "Breaching: breached in 1 of 3",
        "Breaching: breached in 2 of 3",
        "Latched: escalated to Cloud SQL demo-project:us-central1:cagent-sessions",
        "DATABASE_URL now secret:cagent-api-cloudsql-url:latest",
        "mounted at /cloudsql",
        "1 update for the escalation",
        "Demo complete",
    ):
        assert fragment in out
    assert "CHANGED" not in out
    assert out.index("1 of 3") < out.index("2 of 3") < out.index("Latched: escalated")
    assert out.count("storage errors") >= 3, "the evidence windows are shown"


def test_without_an_emulator_or_credentials_plan_says_how_to_get_them(tmp_path: Path) -> None:
    """The real-endpoint path: no ADC file, no GCE metadata probe (NO_GCE_CHECK), so a clear error at once."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CLOUD_RUN_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")
    }
    env.update({"HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "NO_GCE_CHECK": "true"})
    result = subprocess.run([*COMMAND, "plan"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert result.returncode == 1
    assert "no Google credentials" in result.stderr and "CLOUD_RUN_EMULATOR_HOST" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["plan", "--bogus"], ["plan", "-o", "yaml"], ["frobnicate"]])
def test_a_usage_error_exits_1_never_2_which_means_drift(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 1
    assert "usage:" in result.stderr


def test_an_invalid_seed_is_refused_with_a_reason(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "name: projects/demo-project/locations/us-central1/services/x\n"
        "template: {timeout: 4000s, containers: [{image: img}]}\n"
    )
    result = run("emulator", "--port", "0", "--seed", str(seed))
    assert result.returncode == 1
    assert "Timeout must be between 1 and 3600 seconds" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_then_plan_is_in_sync(standalone_emulator: str, tmp_path: Path) -> None:
    env = {"CLOUD_RUN_EMULATOR_HOST": standalone_emulator}
    exported = tmp_path / "exported.yaml"
    result = run(
        "export",
        "cagent-api",
        "--project",
        "demo-project",
        "--region",
        "us-central1",
        "--out",
        str(exported),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "# CR101 (error)" in exported.read_text()
    planned = run("plan", "-f", str(exported), env=env)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "[InSync]" in planned.stdout


def test_export_of_an_unknown_service_is_exit_1(standalone_emulator: str) -> None:
    result = run(
        "export",
        "projects/demo-project/locations/us-central1/services/nope",
        env={"CLOUD_RUN_EMULATOR_HOST": standalone_emulator},
    )
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr and "Traceback" not in result.stderr


def test_server_dry_run_json_carries_the_verdict_and_the_exit_code(
    standalone_emulator: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "defaults: {project: demo-project, region: us-central1}\nservices:\n"
        "  - name: cagent-api\n    scaling: {level: revision, minInstances: 150}\n",
    )
    result = run(
        "plan",
        "-f",
        str(path),
        "--server-dry-run",
        "-o",
        "json",
        env={"CLOUD_RUN_EMULATOR_HOST": standalone_emulator},
    )
    document = json.loads(result.stdout)
    assert result.returncode == 1 and document["exit_code"] == 1
    assert document["services"][0]["outcome"]["message"].startswith(
        "server dry run: rejected: INVALID_ARGUMENT"
    )


def test_the_standalone_emulator_is_driven_through_its_control_endpoint(tmp_path: Path) -> None:
    """Seed, an out-of-band edit as a person, a fault, and the call counts, all over loopback HTTP."""
    import urllib.request

    with _standalone("--admin-port", "0") as (grpc_address, lines):
        admin = next(
            line.split("http://", 1)[1].split("/", 1)[0] for line in lines if "control endpoint" in line
        )

        def post(path: str, body: dict[str, object]) -> dict[str, object]:
            request = urllib.request.Request(
                f"http://{admin}{path}",
                json.dumps(body).encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.loads(answer.read())  # type: ignore[no-any-return]

        post("/v1/services", yaml.safe_load(SEED.read_text())["services"][0])
        env = {"CLOUD_RUN_EMULATOR_HOST": grpc_address}
        assert run("apply", env=env).returncode == 0
        post(
            "/v1/edit",
            {
                "name": "projects/demo-project/locations/us-central1/services/cagent-api",
                "principal": "user:alice@example.com",
                "client": "gcloud",
                "service": {"template": {"timeout": "300s"}},
            },
        )
        drifted = run("plan", env=env)
        assert drifted.returncode == 2 and "by user:alice@example.com with gcloud" in drifted.stdout
        post("/v1/faults", {"method": "ListServices", "count": 10, "code": "PERMISSION_DENIED"})
        assert run("plan", env=env).returncode == 1
        with urllib.request.urlopen(f"http://{admin}/v1/calls", timeout=10) as answer:
            calls = json.loads(answer.read())
        assert calls["UpdateService"] == 1 and calls["ListServices"] >= 3
