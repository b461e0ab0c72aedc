"""`cloudrun-reconciler demo`: the reference case end to end, against an in-process emulator.

Owns the story told to a new user: `cagent-api` as the runbook found it, the plan that shows its four
knobs drifted, the apply, a second plan that is clean, and proof that what the file does not declare
(the image, another env var, a label) was left alone. Every step goes through the real client library;
the demo exits non-zero if any of its checks fails.
"""

from __future__ import annotations

import random
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2

from controller.clock import ManualClock
from controller.cloudrun import CloudRunServices, services_client
from controller.metrics import Metrics
from controller.model import ObservedService
from controller.plan import EXIT_DRIFT, EXIT_IN_SYNC
from controller.reconcile import ApplyResult, reconcile
from controller.render import outcomes_text, plan_text
from controller.runner import Controller, RunSettings
from desired import CheckedDesired, check_desired
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

    calls = ", ".join(f"{method} {count}" for method, count in sorted(server.store.calls.items()))
    print(f"\nAPI calls served by the emulator: {calls}")
    ok = (
        first.plan.exit_code == EXIT_DRIFT
        and all(o.result is ApplyResult.APPLIED for o in applied.outcomes)
        and second.plan.exit_code == EXIT_IN_SYNC
        and unowned_kept
        and healed
    )
    print("Demo complete: drift found, applied, in sync." if ok else "Demo FAILED: see the steps above.")
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
        name = controller.desired.state.services[0].key.resource_name
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
                print(f"  -- user:dev@example.com runs `gcloud run deploy --image {_DEPLOYED_IMAGE}`")
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
