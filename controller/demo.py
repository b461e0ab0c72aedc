"""`cloudrun-reconciler demo`: the reference case end to end, against an in-process emulator.

Owns the story told to a new user: `cagent-api` as the runbook found it, the plan that shows its four
knobs drifted, the apply, a second plan that is clean, and proof that what the file does not declare
(the image, another env var, a label) was left alone; then the loop on a compressed clock healing a
deploy's reset, and SQLite errors held over the escalation windows moving the service to Cloud SQL, with
its evidence. Every step goes through the real client libraries; the demo exits non-zero if any of its
checks fails.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2

from controller.clock import ManualClock
from controller.cloudrun import CloudRunServices, services_client
from controller.escalation import EVIDENCE_ANNOTATION, LATCH_ANNOTATION
from controller.metrics import Metrics
from controller.model import CloudSqlVolume, ObservedService
from controller.plan import EXIT_DRIFT, EXIT_IN_SYNC
from controller.reconcile import ApplyResult, reconcile
from controller.render import outcomes_text, plan_text
from controller.runner import Controller, RunSettings
from controller.signals import REQUEST_COUNT, SignalReader, signal_clients
from desired import CheckedDesired, ServiceSpec, check_desired
from emulator import Emulator, load_seed_file

__all__ = ["run_demo"]


def _step(title: str) -> None:
    print(f"\n== {title}")


def _unowned(service: ObservedService) -> dict[str, str]:
    container = service.containers[0]
    return {
        "image": container.image,
        "env LOG_LEVEL": str(container.env_value("LOG_LEVEL")),
        "labels": ", ".join(f"{k}={v}" for k, v in service.labels),
    }


def run_demo(desired_file: str) -> int:
    desired = check_desired(desired_file)
    seed = resources.files("emulator").joinpath("seeds/cagent-api-as-found.yaml")
    with resources.as_file(seed) as seed_path, Emulator() as server:
        server.seed(load_seed_file(seed_path))
        gateway = CloudRunServices(services_client(server.address))
        try:
            return _story(desired_file, desired, gateway, server)
        finally:
            gateway.close()


def _story(desired_file: str, checked: CheckedDesired, gateway: CloudRunServices, server: Emulator) -> int:
    color = sys.stdout.isatty()
    desired = checked.state
    print(f"Local Cloud Run Admin API (emulator) on {server.address}, seeded with cagent-api as the runbook")
    print(
        "found it: timeout 300s, no minimum (revisions capped at Cloud Run's default of 100), CPU throttled,"
    )
    print("DATABASE_URL without WAL, GCS FUSE streaming writes on.")
    first_read = gateway.list_services("demo-project", "us-central1")
    before = {s.observed.key: _unowned(s.observed) for s in first_read}

    _step(f"0. validate {desired_file}: the policy checks on SQLite over Cloud Storage")
    for finding in checked.findings:
        print(finding.describe())
    verdict = "errors: apply refuses the services they name" if checked.has_errors else "no errors"
    print(f"({len(checked.findings)} finding(s), {verdict})")

    _step("1. plan: what drifted, field by field")
    blocked = checked.blocked_reasons()
    first = reconcile(desired, gateway, dry_run=True, blocked=blocked)
    print(plan_text(first.plan, color=color))
    print(f"(exit code {first.plan.exit_code})")

    _step("2. apply: one read-modify-write per service, guarded by its etag, masked to the owned fields")
    applied = reconcile(desired, gateway, dry_run=False, blocked=blocked)
    print(outcomes_text(applied))

    _step("3. plan again")
    second = reconcile(desired, gateway, dry_run=True, blocked=blocked)
    print(plan_text(second.plan, color=color))
    print(f"(exit code {second.plan.exit_code})")

    _step("4. what the desired file does not declare was left alone")
    after = {
        s.observed.key: _unowned(s.observed) for s in gateway.list_services("demo-project", "us-central1")
    }
    unowned_kept = True
    for key, fields in before.items():
        for name, value in fields.items():
            kept = after[key][name] == value
            unowned_kept &= kept
            print(f"  {'kept   ' if kept else 'CHANGED'}  {key.name} {name}: {after[key][name]}")

    healed = _loop(desired_file, gateway, server)
    escalated = _escalation(desired_file, gateway, server)

    calls = ", ".join(f"{method} {count}" for method, count in sorted(server.store.calls.items()))
    print(f"\nAPI calls served by the emulator: {calls}")
    ok = (
        first.plan.exit_code == EXIT_DRIFT
        and all(o.result is ApplyResult.APPLIED for o in applied.outcomes)
        and second.plan.exit_code == EXIT_IN_SYNC
        and unowned_kept
        and healed
        and escalated
    )
    done = "Demo complete: drift found, applied, in sync; healed in the loop; escalated to Cloud SQL once."
    print(done if ok else "Demo FAILED: see the steps above.")
    return 0 if ok else 1


_DEPLOYED_IMAGE = "us-docker.pkg.dev/demo-project/agents/cagent-api:v2"


def _gcloud_deploy(service: Any) -> None:
    """What `gcloud run deploy --image …:v2` without `--timeout` does: a new image, the timeout reset."""
    service.template.containers[0].image = _DEPLOYED_IMAGE
    service.template.timeout.CopyFrom(duration_pb2.Duration(seconds=300))


def _loop(desired_file: str, gateway: CloudRunServices, server: Emulator) -> bool:
    """`cloudrun-reconciler run` on a compressed clock: passes every 30 s of clock time, a deploy in
    between, healed at the next pass; the deploy's new image stays."""
    _step("5. run: the controller loop (30 s interval on a simulated clock), then a deploy resets a knob")
    clock = ManualClock(server.store.clock())
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "desired-state.yaml"
        copy.write_text(Path(desired_file).read_text(encoding="utf-8"), encoding="utf-8")
        controller = Controller(
            RunSettings(file=str(copy)), gateway, clock=clock, metrics=Metrics(), rng=random.Random(0)
        )
        controller.load()
        key = controller.desired.state.services[0].key
        name = key.resource_name
        healed = False
        for number in range(1, 5):
            while True:  # to the next pass, as the loop's own schedule says
                before = controller.passes
                wait = controller.tick()
                if controller.passes > before:
                    break
                clock.advance(wait)
            result = controller.last_result
            assert result is not None
            outcome = result.outcomes[0]
            changes = ", ".join(change.path for change in result.plan.services[0].changes) or "none"
            print(f"  pass {number} at t+{clock.monotonic():5.1f}s: drift {changes}; {outcome.message}")
            if number == 2:
                server.store.edit(name, _gcloud_deploy, principal="user:dev@example.com", client="gcloud")
                print(
                    f"  -- user:dev@example.com runs `gcloud run deploy {key.name} --image {_DEPLOYED_IMAGE}"
                    f" --region {key.region} --project {key.project}`"
                )
                print("     (no --timeout: the template's timeout goes back to 300s)")
            if number == 3:
                healed = outcome.result is ApplyResult.APPLIED
        live = gateway.get_service(controller.desired.state.services[0].key).observed
        image_kept = live.containers[0].image == _DEPLOYED_IMAGE
        print(f"  timeout now {live.timeout_seconds:.0f}s; image {live.containers[0].image}")
        print(
            f"  {'healed' if healed else 'NOT HEALED'}: the deploy's timeout reset, reverted at the next pass"
        )
        print(f"  {'kept' if image_kept else 'CHANGED'}: the deploy's image (not the controller's to manage)")
    return healed and image_kept and live.timeout_seconds == 3600


class _Traffic:
    """What Cloud Run and the log-based metrics would record for `cagent-api`, minute by minute: steady
    requests, and from `failing_from` on, while the serving revision still runs on SQLite, storage and
    contention errors in the logs and 5xx answers."""

    def __init__(self, server: Emulator, spec: ServiceSpec, start: datetime, failing_from: datetime) -> None:
        self.server, self.spec, self.fed, self.failing_from = server, spec, start, failing_from
        escalation = spec.escalation
        assert escalation is not None and escalation.storage_errors and escalation.contention
        self.storage, self.contention = escalation.storage_errors.metric, escalation.contention.metric

    def until(self, now: datetime) -> None:
        while self.fed + timedelta(minutes=1) <= now:
            self.fed += timedelta(minutes=1)
            service = self.server.store.get(self.spec.key.resource_name)
            revision = service.latest_ready_revision.rsplit("/", 1)[-1]
            on_sqlite = LATCH_ANNOTATION not in service.annotations
            failing = on_sqlite and self.fed > self.failing_from
            labels = {
                "project_id": self.spec.key.project,
                "location": self.spec.key.region,
                "service_name": self.spec.name,
                "revision_name": revision,
            }
            metrics = self.server.metrics
            for code_class, count in (("2xx", 52 if failing else 60), ("5xx", 8 if failing else 0)):
                if count:
                    metrics.add_point(
                        REQUEST_COUNT,
                        count,
                        self.fed,
                        resource_labels=labels,
                        metric_labels={"response_code_class": code_class},
                    )
            if failing:  # `disk I/O error` and `database is locked` in the service's logs
                metrics.add_point(self.storage, 2, self.fed, resource_labels=labels)
                metrics.add_point(self.contention, 6, self.fed, resource_labels=labels)


def _escalation(desired_file: str, gateway: CloudRunServices, server: Emulator) -> bool:
    """SQLite errors start; the controller reads them each pass, holds the breach over the declared
    windows, escalates once with its evidence, and keeps the service on Cloud SQL."""
    checked = check_desired(desired_file)
    spec = next((s for s in checked.state.services if s.escalation and s.escalation.cloud_sql), None)
    if spec is None:
        print("\n(the desired file declares no escalation: step 6 skipped)")
        return True
    escalation = spec.escalation
    assert escalation is not None and escalation.cloud_sql is not None
    window, needed = escalation.window, escalation.consecutive_windows
    _step(
        f"6. escalation: SQLite errors held for {needed} windows of {window // 60} min move {spec.name} to "
        "Cloud SQL (simulated clock)"
    )
    clock = ManualClock(server.store.clock())
    delay = 120.0
    start = clock.now()
    traffic = _Traffic(
        server, spec, start - timedelta(seconds=window * needed + delay), start + timedelta(minutes=3)
    )
    reader = SignalReader(*signal_clients(server.address), manage_log_metrics=True)
    updates_before = server.store.calls["UpdateService"]
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "desired-state.yaml"
        copy.write_text(Path(desired_file).read_text(encoding="utf-8"), encoding="utf-8")
        controller = Controller(
            RunSettings(file=str(copy), signal_delay=delay),
            gateway,
            clock=clock,
            metrics=Metrics(),
            rng=random.Random(0),
            signals=reader,
        )
        try:
            controller.load()
            said, escalated_at = "", None
            signals: dict[str, Any] = {}
            print("  t+3m: `disk I/O error` and `database is locked` start in the logs; 8 % of requests 5xx")
            print(f"  (each pass reads windows ending {delay:.0f} s back: Monitoring ingests late)")
            while clock.monotonic() < 3600 and (
                escalated_at is None or clock.monotonic() < escalated_at + 600
            ):
                traffic.until(clock.now())
                before = controller.passes
                wait = controller.tick()
                if controller.passes == before:
                    clock.advance(wait)
                    continue
                status = controller.status.document()["services"][0]
                escalated = next(c for c in status["conditions"] if c["type"] == "Escalated")
                minute = clock.monotonic() / 60
                line = f"{escalated['reason']}: {escalated['message']}"
                if line.split(":")[:2] != said.split(":")[:2]:  # a new verdict or streak, not new numbers
                    print(f"  t+{minute:4.1f}m  {line}")
                said = line
                if escalated["status"] == "True" and escalated_at is None:
                    escalated_at = clock.monotonic()
            signals = controller.status.document()["services"][0].get("signals") or {}
        finally:
            reader.close()
    ratio = signals.get("errorRatio")
    shown = "no data" if ratio is None else f"{ratio:.1%}"
    print(
        f"  t+{clock.monotonic() / 60:4.1f}m  on Cloud SQL for 10 min: 5xx ratio {shown}, "
        f"{signals.get('reason')}"
    )
    live = gateway.get_service(spec.key).observed
    evidence = json.loads(dict(live.annotations).get(EVIDENCE_ANNOTATION, "{}") or "{}")
    print("  evidence written on the service with the latch:")
    for item in evidence.get("windows", []):
        print(
            f"    window to {item['end'][11:16]}: {item['requests']} requests, "
            f"{item['storageErrors']} storage errors, {item['contention']} `database is locked` "
            f"→ {item['state']}"
        )
    print(f"    thresholds: {json.dumps(evidence.get('thresholds', {}))}")
    container = live.containers[0]
    database = spec.database.env if spec.database else "DATABASE_URL"
    target = escalation.cloud_sql.instance
    volume = next((v for _, v in live.volumes if isinstance(v, CloudSqlVolume)), None)
    mount = next((path for name, path in container.volume_mounts if name == "cloudsql"), None)
    print(f"  {database} now {container.env_value(database)}")
    print(f"  volume: {volume}, mounted at {mount}; the SQLite volume stays for the way back")
    share = live.latest_share
    print(f"  serving revision {live.latest_ready_revision.rsplit('/', 1)[-1]} at {share} % of traffic")
    updates = server.store.calls["UpdateService"] - updates_before
    print(f"  {updates} update for the escalation, none after it; image still {container.image}")
    print(f"  the one way back: cloudrun-reconciler deescalate {spec.name} --dry-run, then without it")
    return (
        updates == 1
        and dict(live.annotations).get(LATCH_ANNOTATION) == "cloudsql"
        and bool(evidence.get("windows"))
        and share == 100
        and volume is not None
        and target in volume.instances
        and mount == "/cloudsql"
    )
