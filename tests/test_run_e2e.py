"""`cloudrun-reconciler run` as deployed: its own process, against the standalone emulator, read only
through its HTTP endpoints and the real Cloud Run client; and its logs, which never hold a secret."""

from __future__ import annotations

import io
import json
import os
import random
import re
from pathlib import Path
from typing import Any

from controller.clock import ManualClock
from controller.cloudrun import CloudRunServices, services_client
from controller.logs import configure_logging
from controller.metrics import Metrics
from controller.runner import Controller, RunSettings
from desired import ServiceKey
from emulator import Emulator
from tests.conftest import REFERENCE, as_found_services
from tests.processes import SEED, Running, admin_address, eventually, http, standalone

KEY = ServiceKey(project="demo-project", region="us-central1", name="cagent-api")
WHERE = {"service": "cagent-api", "project": "demo-project", "region": "us-central1"}  # metric labels
PASSWORD, TOKEN = "pa55-w0rd-xyz", "tok-9f8e7d6c5b4a"


def desired(timeout: str, token: str = TOKEN) -> str:
    return f"""\
defaults: {{project: demo-project, region: us-central1}}
services:
  - name: cagent-api
    timeout: {timeout}
    env:
      API_TOKEN: {token}
      CALLBACK_URL: "https://agent:{PASSWORD}@hooks.example.com/done"
"""


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        found = re.fullmatch(rf"{name}(?:\{{(.*)\}})?", sample)
        if found and ",".join(sorted((found.group(1) or "").split(","))).strip(",") == wanted:
            return float(value)
    return 0.0


def test_run_heals_an_out_of_band_edit_and_applies_a_file_edit(tmp_path: Path) -> None:
    path = tmp_path / "desired.yaml"
    path.write_text(desired("3600s"))
    with standalone("--admin-port", "0", "--seed", str(SEED)) as (address, lines):
        admin = f"http://{admin_address(lines)}"
        env = {**os.environ, "CLOUD_RUN_EMULATOR_HOST": address}
        running = Running("--file", str(path), "--interval", "1s", "--poll", "0.2s", env=env)
        gateway = CloudRunServices(services_client(address))
        try:
            assert running.get("/healthz")[0] == 200
            eventually(lambda: running.get("/readyz")[0] == 200, "the first pass")

            def timeout_is(seconds: int) -> bool:
                return gateway.get_service(KEY).observed.timeout_seconds == seconds

            eventually(lambda: timeout_is(3600), "the first apply")
            # a deploy resets the timeout, as `gcloud run deploy` without --timeout does
            edit = {
                "name": REFERENCE,
                "principal": "user:deployer@example.com",
                "client": "gcloud",
                "service": {"template": {"timeout": "300s"}},
            }
            assert http("POST", f"{admin}/v1/edit", edit)[0] == 200
            assert http("POST", f"{running.url}/reconcile?service=cagent-api")[0] == 202
            eventually(lambda: timeout_is(3600), "the out-of-band edit healed")

            # the status may already show a later pass; the metrics keep the count
            text = eventually(
                lambda: (
                    (t := running.get("/metrics")[1])
                    and metric(t, "cloudrun_reconciler_applies_total", **WHERE, result="applied") >= 2
                    and t
                ),
                "two applies counted",
            )
            assert metric(text, "cloudrun_reconciler_drift_total", **WHERE, field="template.timeout") >= 2
            assert metric(text, "cloudrun_reconciler_api_calls_total", method="UpdateService", code="OK") >= 2
            # a GitOps edit: picked up within a poll, no webhook
            path.write_text(desired("1800s"))
            eventually(lambda: timeout_is(1800), "the desired-file edit applied")

            def in_sync() -> bool:
                service = running.get("/status")[1]["services"][0]
                synced = next(c for c in service["conditions"] if c["type"] == "Synced")
                return synced["status"] == "True" and not service["lastPlan"]["changes"]

            eventually(in_sync, "/status to report the service in sync")
            status = running.get("/status")[1]
            assert status["controller"]["desiredFile"]["valid"] is True
            assert status["controller"]["lastPass"]["result"] == "ok"
        finally:
            gateway.close()
            code = running.stop(timeout=10.0)  # Cloud Run allows 10 s after SIGTERM
        assert code == 0
        log = running.log()
        assert '"message": "applied"' in log and '"severity": "INFO"' in log
        assert PASSWORD not in log and TOKEN not in log


def test_no_log_line_carries_a_secret_value_or_url_password(emulator: Emulator, tmp_path: Path) -> None:
    """Drift of a secret-named env var and of a URL with a password, an out-of-band change to both, and a
    file edit that changes the secret: every event logged, none with a value to hide."""
    emulator.seed(as_found_services())
    stream = io.StringIO()
    configure_logging("debug", stream=stream, json_lines=True)
    path = tmp_path / "desired.yaml"
    path.write_text(desired("3600s"))
    clock = ManualClock()
    gateway = CloudRunServices(services_client(emulator.address))
    try:
        controller = Controller(
            RunSettings(file=str(path), workers=1),
            gateway,
            clock=clock,
            metrics=Metrics(),
            rng=random.Random(1),
        )
        controller.load()
        controller.tick()

        def leak(service: Any) -> None:
            for variable in service.template.containers[0].env:
                if variable.name == "CALLBACK_URL":
                    variable.value = "https://agent:0ther-pa55@hooks.example.com/done"
                if variable.name == "API_TOKEN":
                    variable.value = "tok-someone-else"

        emulator.store.edit(REFERENCE, leak, principal="user:eve@example.com")
        controller.request()
        controller.tick()
        path.write_text(desired("3600s", token="tok-rotated-1234") + "    bogus: 1\n")  # invalid: kept out
        clock.advance(3.0)
        controller.tick()
        path.write_text(desired("3600s", token="tok-rotated-1234"))
        clock.advance(3.0)
        controller.tick()
        document = json.dumps(controller.status.document())
    finally:
        gateway.close()
        configure_logging("warning")
    log = stream.getvalue()
    events = [json.loads(line)["message"] for line in log.splitlines()]
    for expected in ("drift_detected", "applied", "desired_file_invalid", "desired_file_loaded"):
        assert expected in events, expected
    for secret in (PASSWORD, "0ther-pa55", TOKEN, "tok-someone-else", "tok-rotated-1234"):
        assert secret not in log, secret
        assert secret not in document, secret
    assert "API_TOKEN" in log  # the change itself is still reported


def test_sigterm_with_writes_in_flight_on_several_workers_exits_within_the_grace(tmp_path: Path) -> None:
    """Three drifted services, each update stuck in the API: SIGTERM ends the process within its grace
    (Cloud Run kills at 10 s), not when the stuck writes end."""
    names = ["cagent-api", "svc-1", "svc-2"]
    path = tmp_path / "desired.yaml"
    path.write_text(
        "defaults: {project: demo-project, region: us-central1}\nservices:\n"
        + "".join(f"  - name: {name}\n    timeout: 3600s\n" for name in names)
    )
    seeds = []
    for name in names:
        seeds += ["--seed", str(tmp_path / f"{name}.yaml")]
        Path(seeds[-1]).write_text(SEED.read_text().replace("cagent-api", name))
    with standalone("--admin-port", "0", *seeds) as (address, lines):
        admin = f"http://{admin_address(lines)}"
        assert http("POST", f"{admin}/v1/faults", {"method": "UpdateService", "latency": 60})[0] == 200
        env = {**os.environ, "CLOUD_RUN_EMULATOR_HOST": address}
        running = Running("--file", str(path), "--workers", "4", "--shutdown-grace", "2s", env=env)
        eventually(
            lambda: http("GET", f"{admin}/v1/calls")[1].get("UpdateService", 0) >= 3, "three writes in flight"
        )
        assert running.stop(timeout=8.0) == 0  # gone within Cloud Run's 10 s, not when the writes end (60 s)
        assert '"shutdown_abandoned"' in running.log()


def test_run_started_on_an_invalid_file_stays_up_and_picks_up_the_fix(tmp_path: Path) -> None:
    """A restart while a bad commit is checked out: no exit, no pass, the errors in /status; then the fix."""
    path = tmp_path / "desired.yaml"
    path.write_text(desired("3600s").replace("timeout: 3600s", "timeout: 4000s"))
    with standalone("--seed", str(SEED)) as (address, _):
        env = {**os.environ, "CLOUD_RUN_EMULATOR_HOST": address}
        running = Running("--file", str(path), "--interval", "1s", "--poll", "0.2s", env=env)
        gateway = CloudRunServices(services_client(address))
        try:
            assert running.get("/healthz")[0] == 200 and running.get("/readyz")[0] == 503
            status = running.get("/status")[1]["controller"]["desiredFile"]
            assert status["valid"] is False and "CR010" in status["errors"][0]
            path.write_text(desired("3600s"))
            eventually(lambda: running.get("/readyz")[0] == 200, "the first pass on the fixed file")
            eventually(lambda: gateway.get_service(KEY).observed.timeout_seconds == 3600, "the apply")
        finally:
            gateway.close()
            code = running.stop()
        assert code == 0 and '"desired_file_invalid"' in running.log()
