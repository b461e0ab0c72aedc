"""`cloudrun-reconciler demo`: the reference case end to end, against an in-process emulator.

Owns the story told to a new user: `cagent-api` as the runbook found it, the plan that shows its four
knobs drifted, the apply, a second plan that is clean, and proof that what the file does not declare
(the image, another env var, a label) was left alone. Every step goes through the real client library;
the demo exits non-zero if any of its checks fails.
"""

from __future__ import annotations

import sys
from importlib import resources

from controller.cloudrun import CloudRunServices, services_client
from controller.model import ObservedService
from controller.plan import EXIT_DRIFT, EXIT_IN_SYNC
from controller.reconcile import ApplyResult, reconcile
from controller.render import outcomes_text, plan_text
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

    calls = ", ".join(f"{method} {count}" for method, count in sorted(server.store.calls.items()))
    print(f"\nAPI calls served by the emulator: {calls}")
    ok = (
        first.plan.exit_code == EXIT_DRIFT
        and all(o.result is ApplyResult.APPLIED for o in applied.outcomes)
        and second.plan.exit_code == EXIT_IN_SYNC
        and unowned_kept
    )
    print("Demo complete: drift found, applied, in sync." if ok else "Demo FAILED: see the steps above.")
    return 0 if ok else 1
