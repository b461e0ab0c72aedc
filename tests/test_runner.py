"""The long-running controller on an injected clock, against the emulator through the real client.

Every schedule here is read off a `ManualClock`: the tests move time and call `tick()`; nothing sleeps.
"""

from __future__ import annotations

import itertools
import random
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from controller.clock import ManualClock
from controller.cloudrun import CloudRunServices
from controller.flap import FlapPolicy
from controller.metrics import Metrics
from controller.runner import Controller, RunSettings
from emulator import Emulator
from tests.conftest import REFERENCE, as_found_services

OTHER = REFERENCE.replace("cagent-api", "worker")

WHERE = 'project="demo-project",region="us-central1"'  # the labels naming a service besides its name


def desired_text(timeout: str = "3600s", extra: str = "") -> str:
    return f"""\
controller: {{interval: 30s}}
defaults: {{project: demo-project, region: us-central1}}
services:
  - name: cagent-api
    timeout: {timeout}
{extra}  - name: worker
    timeout: {timeout}
"""


ONLY_CAGENT = desired_text().replace("  - name: worker\n    timeout: 3600s\n", "")


@pytest.fixture
def fleet(emulator: Emulator) -> Emulator:
    """cagent-api as found, and a second service `worker` like it."""
    services = as_found_services()
    worker = type(services[0])()
    worker.CopyFrom(services[0])
    worker.name = OTHER
    emulator.seed([*services, worker])
    return emulator


def make(
    path: Path,
    gateway: CloudRunServices,
    clock: ManualClock,
    text: str | None = None,
    **settings: Any,
) -> Controller:
    path.write_text(text if text is not None else desired_text())
    controller = Controller(
        RunSettings(file=str(path), poll=2.0, workers=1, **settings),
        gateway,
        clock=clock,
        metrics=Metrics(),
        rng=random.Random(7),
    )
    controller.load()
    return controller


def timeout_of(emulator: Emulator, name: str = REFERENCE) -> int:
    return int(emulator.store.get(name).template.timeout.seconds)


def set_timeout(emulator: Emulator, seconds: int, name: str = REFERENCE, who: str = "alice") -> None:
    def change(service: Any) -> None:
        service.template.timeout.CopyFrom(duration_pb2.Duration(seconds=seconds))

    emulator.store.edit(name, change, principal=f"user:{who}@example.com", client="gcloud")


def next_pass(controller: Controller, clock: ManualClock) -> None:
    """Move the clock to the next pass and run it (polls on the way run too)."""
    passes = controller.passes
    while True:
        wait = controller.tick()
        if controller.passes > passes:
            return
        clock.advance(wait)


def condition(controller: Controller, type_: str, name: str = "cagent-api") -> dict[str, Any]:
    service = next(s for s in controller.status.document()["services"] if s["name"] == name)
    return next(c for c in service["conditions"] if c["type"] == type_)  # type: ignore[no-any-return]


def test_passes_follow_the_interval_stretched_by_at_most_the_jitter(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    controller = make(tmp_path / "d.yaml", gateway, clock)
    gaps = []
    wait = controller.tick()  # the first pass runs at once
    assert controller.passes == 1
    for _ in range(20):
        passes, elapsed = controller.passes, 0.0
        while controller.passes == passes:
            clock.advance(wait)
            elapsed += wait
            wait = controller.tick()
        gaps.append(elapsed)
    assert all(30.0 <= gap <= 33.0 for gap in gaps), gaps
    assert len({round(gap, 3) for gap in gaps}) > 1, "the jitter varies the interval"
    assert fleet.store.calls["ListServices"] == 21  # one list per pass, nothing between passes


def test_backoff_grows_by_three_from_two_seconds_and_resets_after_a_success(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    controller = make(tmp_path / "d.yaml", gateway, clock, text=ONLY_CAGENT)
    fleet.store.faults.fail_next("UpdateService", 4, grpc.StatusCode.UNAVAILABLE)
    controller.tick()
    updates_at = [clock.monotonic()]
    while len(updates_at) < 5:  # four failures, then the write that succeeds
        wait = controller.tick()
        clock.advance(wait)
        before = fleet.store.calls["UpdateService"]
        controller.tick()
        if fleet.store.calls["UpdateService"] > before:
            updates_at.append(clock.monotonic())
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(updates_at)]
    assert gaps == [2.0, 6.0, 18.0, 54.0]
    assert timeout_of(fleet) == 3600
    assert condition(controller, "Synced")["reason"] == "Applied"
    # reset: the next failure waits 2 s again, not 162 s
    set_timeout(fleet, 300)
    fleet.store.faults.fail_next("UpdateService", 1, grpc.StatusCode.UNAVAILABLE)
    next_pass(controller, clock)
    failed_at = clock.monotonic()
    assert timeout_of(fleet) == 300
    status = next(s for s in controller.status.document()["services"] if s["name"] == "cagent-api")
    assert status["backoff"]["failures"] == 1 and status["backoff"]["retryInSeconds"] == 2.0
    next_pass(controller, clock)
    assert clock.monotonic() - failed_at == pytest.approx(2.0) and timeout_of(fleet) == 3600


def test_retries_are_counted_by_reason_conflicts_and_writes_after_a_backoff(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    controller = make(tmp_path / "d.yaml", gateway, clock, text=ONLY_CAGENT)

    def retries(reason: str) -> float | None:
        return controller.metrics.registry.get_sample_value(
            "cloudrun_reconciler_retries_total", {"reason": reason}
        )

    fleet.store.faults.fail_next("UpdateService", 2, grpc.StatusCode.ABORTED)
    controller.tick()  # two stale etags, re-read and re-planned each time, then the write
    assert timeout_of(fleet) == 3600 and fleet.store.calls["UpdateService"] == 3
    assert (retries("conflict"), retries("backoff")) == (2.0, None)
    set_timeout(fleet, 300)
    fleet.store.faults.fail_next("UpdateService", 1, grpc.StatusCode.UNAVAILABLE)
    next_pass(controller, clock)  # fails: backing off
    assert retries("backoff") is None
    next_pass(controller, clock)  # the write after the backoff
    assert timeout_of(fleet) == 3600 and (retries("conflict"), retries("backoff")) == (2.0, 1.0)


def test_a_permanent_error_waits_the_longest_backoff_and_a_spec_change_forgives_it(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    path = tmp_path / "d.yaml"
    controller = make(path, gateway, clock)
    fleet.store.faults.fail_next("UpdateService", 1, grpc.StatusCode.PERMISSION_DENIED)
    controller.tick()
    assert timeout_of(fleet) == 300 and timeout_of(fleet, OTHER) == 3600  # one failure spares the other
    status = next(s for s in controller.status.document()["services"] if s["name"] == "cagent-api")
    assert status["backoff"]["permanent"] and status["backoff"]["retryInSeconds"] == 300.0
    clock.advance(35.0)
    controller.tick()  # a regular pass: planned, not written while backing off
    assert timeout_of(fleet) == 300
    assert "backing off after 1 failure(s)" in condition(controller, "Synced")["message"]
    path.write_text(desired_text(timeout="1800s"))
    clock.advance(2.0)
    controller.tick()  # within one poll: the new file, a pass at once, the backoff forgiven
    assert timeout_of(fleet) == 1800 and timeout_of(fleet, OTHER) == 1800


def test_a_changed_file_is_applied_within_one_poll(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    path = tmp_path / "d.yaml"
    controller = make(path, gateway, clock)
    controller.tick()
    assert timeout_of(fleet) == 3600
    path.write_text(desired_text(timeout="1200s"))
    clock.advance(1.5)
    controller.tick()
    assert timeout_of(fleet) == 3600  # not yet polled
    clock.advance(0.5)
    controller.tick()
    assert timeout_of(fleet) == 1200 and timeout_of(fleet, OTHER) == 1200
    assert controller.passes == 2


def test_a_file_invalid_at_start_is_reported_and_no_pass_runs_until_a_valid_one_arrives(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    """An instance restarted while a bad commit is checked out waits for a fix instead of exiting."""
    clock = ManualClock()
    path = tmp_path / "d.yaml"
    path.write_text(desired_text(timeout="1200s") + "    bogus: 1\n")
    controller = Controller(
        RunSettings(file=str(path), poll=2.0, workers=1), gateway, clock=clock, metrics=Metrics()
    )
    assert controller.load_or_wait() is None
    for _ in range(3):
        assert controller.tick() == pytest.approx(2.0)  # the next poll, not a busy loop
        clock.advance(2.0)
    assert controller.passes == 0 and not controller.ready and controller.healthy()
    assert sum(fleet.store.calls.values()) == 0 and timeout_of(fleet) == 300
    document = controller.status.document()["controller"]["desiredFile"]
    assert document["valid"] is False and "CR002" in document["errors"][0]
    assert controller.metrics.registry.get_sample_value("cloudrun_reconciler_desired_file_valid") == 0
    assert not controller.request("cagent-api")  # nothing is declared yet
    path.write_text(desired_text(timeout="1200s"))
    controller.tick()  # polled: adopted, and a pass at once
    assert controller.passes == 1 and timeout_of(fleet) == 1200 and timeout_of(fleet, OTHER) == 1200
    assert controller.status.document()["controller"]["desiredFile"]["valid"] is True


def test_an_invalid_file_is_kept_out_while_the_last_valid_state_is_served(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    path = tmp_path / "d.yaml"
    controller = make(path, gateway, clock)
    controller.tick()
    path.write_text(desired_text(timeout="9000s"))  # above Cloud Run's 3600 s
    clock.advance(2.0)
    controller.tick()
    document = controller.status.document()["controller"]["desiredFile"]
    assert document["valid"] is False
    assert any(":5:14 CR010 services[0].timeout" in error for error in document["errors"])
    assert b"cloudrun_reconciler_desired_file_valid 0.0" in controller.metrics.render()
    set_timeout(fleet, 300)  # a deploy resets it: healed to the last valid 3600 s
    next_pass(controller, clock)
    assert timeout_of(fleet) == 3600
    path.write_text(desired_text(timeout="2400s"))
    clock.advance(2.0)
    controller.tick()
    assert timeout_of(fleet) == 2400
    assert controller.status.document()["controller"]["desiredFile"]["valid"] is True


def test_the_flap_guard_engages_names_the_writer_and_releases_on_a_spec_change(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    path = tmp_path / "d.yaml"
    controller = make(path, gateway, clock, flap=FlapPolicy(limit=2, window=3600.0))
    controller.tick()
    for _ in range(2):  # reverted twice: the limit
        set_timeout(fleet, 300, who="deploy-bot")
        controller.request()
        controller.tick()
        assert timeout_of(fleet) == 3600
    assert condition(controller, "Conflict")["status"] == "False"
    # changed back a third time: more than the limit; left in place and reported
    set_timeout(fleet, 300, who="deploy-bot")
    controller.request()
    controller.tick()
    assert timeout_of(fleet) == 300
    conflict = condition(controller, "Conflict")
    assert conflict["status"] == "True" and conflict["reason"] == "FlapGuard"
    assert "template.timeout was changed back by user:deploy-bot@example.com" in conflict["message"]
    assert (
        f'cloudrun_reconciler_flap_held_fields{{{WHERE},service="cagent-api"}} 1.0'.encode()
        in controller.metrics.render()
    )
    assert timeout_of(fleet, OTHER) == 3600  # the other service is not held
    set_timeout(fleet, 600, who="carol")  # another writer joins the fight: the condition names her now
    controller.request()
    controller.tick()
    assert timeout_of(fleet) == 600
    assert "changed back by user:carol@example.com" in condition(controller, "Conflict")["message"]
    path.write_text(desired_text(timeout="1800s"))  # a person decided
    clock.advance(2.0)
    controller.tick()
    assert timeout_of(fleet) == 1800
    assert condition(controller, "Conflict")["status"] == "False"


def test_the_flap_guard_releases_when_the_fight_stops(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    controller = make(tmp_path / "d.yaml", gateway, clock, flap=FlapPolicy(limit=1, window=600.0))
    controller.tick()
    for _ in range(2):  # one revert engages the guard; the second change is kept
        set_timeout(fleet, 300, who="deploy-bot")
        controller.request()
        controller.tick()
    assert timeout_of(fleet) == 300 and condition(controller, "Conflict")["status"] == "True"
    contested_at = clock.monotonic()
    while clock.monotonic() - contested_at < 600.0:  # held while nobody touches it for the window
        assert timeout_of(fleet) == 300
        next_pass(controller, clock)
    assert timeout_of(fleet) == 3600 and condition(controller, "Conflict")["status"] == "False"
    assert clock.monotonic() - contested_at < 600.0 + 34.0  # at the first pass after the window


def test_a_stop_during_an_apply_finishes_that_write_and_starts_no_other(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    controller = make(tmp_path / "d.yaml", gateway, clock)
    entered, release = threading.Event(), threading.Event()

    def blocking_sleep(_: float) -> None:
        entered.set()
        assert release.wait(30)

    fleet.store.faults.sleep = blocking_sleep
    fleet.store.faults.add_latency("UpdateService", 1.0)
    loop = threading.Thread(target=controller.serve, kwargs={"wait": lambda _: None})
    loop.start()
    assert entered.wait(30), "the first update reached the API"
    controller.stop()  # SIGTERM's handler does this
    release.set()
    loop.join(30)
    assert not loop.is_alive()
    assert fleet.store.calls["UpdateService"] == 1
    assert timeout_of(fleet) == 3600 and timeout_of(fleet, OTHER) == 300
    outcomes = {o.key.name: o for o in controller.last_result.outcomes} if controller.last_result else {}
    assert outcomes["worker"].message.startswith("not started: the pass was cut short")


def test_a_pass_past_its_timeout_starts_no_further_write(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    controller = make(tmp_path / "d.yaml", gateway, clock, pass_timeout=10.0)
    fleet.store.faults.sleep = lambda seconds: clock.advance(seconds)  # the API takes 11 s of clock time
    fleet.store.faults.add_latency("UpdateService", 11.0)
    controller.tick()
    assert timeout_of(fleet) == 3600 and timeout_of(fleet, OTHER) == 300
    assert b'cloudrun_reconciler_passes_total{result="cut"} 1.0' in controller.metrics.render()
    next_pass(controller, clock)
    assert timeout_of(fleet, OTHER) == 3600  # the next pass finishes the job


def test_dry_run_plans_every_pass_and_writes_nothing(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    controller = make(tmp_path / "d.yaml", gateway, clock, dry_run=True)
    controller.tick()
    next_pass(controller, clock)
    assert controller.passes == 2 and fleet.store.calls["UpdateService"] == 0
    synced = condition(controller, "Synced")
    assert synced["status"] == "False" and synced["reason"] == "DryRun"
    service = next(s for s in controller.status.document()["services"] if s["name"] == "cagent-api")
    assert [c["field"] for c in service["lastPlan"]["changes"]] == ["template.timeout"]
    assert service["lastPlan"]["changes"][0]["old"] == "300s"


def test_a_crash_inside_a_pass_is_reported_and_the_loop_goes_on(
    fleet: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    clock = ManualClock()
    controller = make(tmp_path / "d.yaml", gateway, clock)
    real = gateway.list_services
    calls = {"n": 0}

    def broken(project: str, region: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ZeroDivisionError("a bug")
        return real(project, region)

    gateway.list_services = broken  # type: ignore[method-assign]
    controller.tick()
    assert b'cloudrun_reconciler_passes_total{result="crashed"} 1.0' in controller.metrics.render()
    next_pass(controller, clock)
    assert timeout_of(fleet) == 3600


def test_one_service_name_in_two_regions_is_two_series_in_the_metrics(
    emulator: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    services = as_found_services()
    east = type(services[0])()
    east.CopyFrom(services[0])
    east.name = REFERENCE.replace("us-central1", "us-east1")
    emulator.seed([*services, east])
    text = (
        "defaults: {project: demo-project}\nservices:\n"
        "  - {name: cagent-api, region: us-central1, timeout: 3600s}\n"
        "  - {name: cagent-api, region: us-east1, timeout: 300s}\n"
    )
    clock = ManualClock()
    controller = make(tmp_path / "d.yaml", gateway, clock, text)
    next_pass(controller, clock)
    shown = controller.metrics.render().decode()
    central = 'project="demo-project",region="us-central1",service="cagent-api"'
    east = 'project="demo-project",region="us-east1",service="cagent-api"'
    assert f'cloudrun_reconciler_drift_total{{field="template.timeout",{central}}} 1.0' in shown
    assert f"cloudrun_reconciler_service_in_sync{{{central}}} 1.0" in shown  # drifted, then applied
    assert f"cloudrun_reconciler_service_in_sync{{{east}}} 1.0" in shown  # already at 300 s
    assert f'drift_total{{field="template.timeout",{east}}}' not in shown
