"""Escalation from SQLite to Cloud SQL: the decision over a table of window series, then the whole story
against the emulator through the real Cloud Run, Monitoring and Logging clients on an injected clock.

Signals are written into the emulator's Monitoring store as Cloud Run and log-based metrics would record
them; the controller reads them back with one `ListTimeSeries` per signal and judges them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from controller import cli
from controller.clock import ManualClock
from controller.cloudrun import EMULATOR_HOST_ENV, CloudRunServices
from controller.escalation import (
    DEESCALATED_ANNOTATION,
    EVIDENCE_ANNOTATION,
    LATCH_ANNOTATION,
    Verdict,
    Window,
    WindowState,
    decide,
)
from controller.metrics import Metrics
from controller.runner import Controller, RunSettings
from controller.signals import REQUEST_COUNT, SignalReader, signal_clients
from desired import EscalationSpec
from emulator import Emulator
from tests.conftest import REFERENCE

START = datetime(2026, 1, 1, tzinfo=UTC)
CONTENTION = "logging.googleapis.com/user/cagent_sqlite_contention"
STORAGE = "logging.googleapis.com/user/cagent_sqlite_storage_errors"
CLOUD_SQL = "demo-project:us-central1:cagent-sessions"
IMAGE = "us-docker.pkg.dev/demo-project/agents/cagent-api:2026.11.3"

WHERE = 'project="demo-project",region="us-central1"'  # the labels naming a service besides its name


# --- the decision, a pure function ---------------------------------------------------------------------

SPEC = EscalationSpec.model_validate(
    {
        "window": "60s",
        "consecutiveWindows": 3,
        "minRequests": 20,
        "contention": {"metric": CONTENTION, "maxRate": 0.05},
        "storageErrors": {"metric": STORAGE, "maxCount": 2},
    }
)


def series(*cells: tuple[int | None, int, int]) -> list[Window]:
    """Windows oldest first from (requests, contention, storage) cells, a minute apart."""
    return [
        Window(end=START + timedelta(minutes=i), requests=r, contention=c, storage=s)
        for i, (r, c, s) in enumerate(cells)
    ]


OK = (100, 0, 0)
LOCKED = (100, 6, 0)  # 6 % of requests hit `database is locked`: above 5 %
AT_RATE = (100, 5, 0)  # exactly 5 %: not above the maximum
BROKEN = (100, 0, 3)  # 3 storage errors: above 2
AT_COUNT = (100, 0, 2)  # exactly the maximum count
QUIET = (19, 19, 19)  # fewer requests than minRequests: not judged, however bad
AT_MIN = (20, 2, 0)  # exactly minRequests, 10 % contention: judged, a breach
NO_DATA = (None, 0, 0)


@pytest.mark.parametrize(
    ("cells", "verdict", "states"),
    [
        ([OK, OK, OK], Verdict.HEALTHY, ["ok", "ok", "ok"]),
        ([LOCKED, LOCKED, LOCKED], Verdict.ESCALATE, ["breach"] * 3),
        ([BROKEN, BROKEN, BROKEN], Verdict.ESCALATE, ["breach"] * 3),
        ([LOCKED, BROKEN, LOCKED], Verdict.ESCALATE, ["breach"] * 3),  # either signal keeps the streak
        ([OK, OK, LOCKED], Verdict.BREACHING, ["ok", "ok", "breach"]),  # a one-window blip
        ([OK, LOCKED, LOCKED], Verdict.BREACHING, ["ok", "breach", "breach"]),
        ([LOCKED, OK, LOCKED], Verdict.BREACHING, ["breach", "ok", "breach"]),  # the streak is broken
        ([LOCKED, LOCKED, OK], Verdict.HEALTHY, ["breach", "breach", "ok"]),  # recovered
        ([AT_RATE, AT_RATE, AT_RATE], Verdict.HEALTHY, ["ok"] * 3),  # the rate boundary is not a breach
        ([AT_COUNT, AT_COUNT, AT_COUNT], Verdict.HEALTHY, ["ok"] * 3),  # nor the count boundary
        ([AT_MIN, AT_MIN, AT_MIN], Verdict.ESCALATE, ["breach"] * 3),  # minRequests itself is judged
        ([QUIET, QUIET, QUIET], Verdict.LOW_TRAFFIC, ["low-traffic"] * 3),
        ([LOCKED, QUIET, LOCKED], Verdict.BREACHING, ["breach", "low-traffic", "breach"]),
        ([LOCKED, LOCKED, NO_DATA], Verdict.NO_DATA, ["breach", "breach", "no-data"]),  # not a recovery
        ([OK, OK, NO_DATA], Verdict.NO_DATA, ["ok", "ok", "no-data"]),  # nor a breach
        ([NO_DATA, LOCKED, LOCKED], Verdict.BREACHING, ["no-data", "breach", "breach"]),
        ([LOCKED, LOCKED], Verdict.BREACHING, ["breach", "breach"]),  # too few windows yet
        ([OK, LOCKED, LOCKED, LOCKED], Verdict.ESCALATE, ["breach"] * 3),  # only the newest count
        ([], Verdict.NO_DATA, []),
    ],
)
def test_the_decision_over_a_table_of_window_series(
    cells: list[tuple[int | None, int, int]], verdict: Verdict, states: list[str]
) -> None:
    decision = decide(SPEC, series(*cells))
    assert decision.verdict is verdict, decision.reason
    assert [judged.state.value for judged in decision.windows] == states


def test_a_missing_metric_is_not_judged_and_all_missing_is_no_data() -> None:
    storage_only = decide(SPEC, series(LOCKED, LOCKED, LOCKED), missing=[CONTENTION])
    assert storage_only.verdict is Verdict.HEALTHY  # contention is not read: its breach cannot count
    assert "contentionMaxRate" not in storage_only.thresholds
    none = decide(SPEC, series(BROKEN, BROKEN, BROKEN), missing=[CONTENTION, STORAGE])
    assert none.verdict is Verdict.NO_DATA
    assert CONTENTION in none.reason and STORAGE in none.reason


def test_the_evidence_carries_the_numbers_the_windows_and_the_thresholds() -> None:
    decision = decide(SPEC, series(OK, LOCKED, BROKEN, LOCKED))
    evidence = decision.evidence()
    assert evidence["verdict"] == "Escalate"
    assert evidence["thresholds"] == {
        "window": "60s",
        "consecutiveWindows": 3,
        "minRequests": 20,
        "contentionMaxRate": 0.05,
        "storageErrorsMaxCount": 2,
    }
    assert [(w["requests"], w["contention"], w["storageErrors"]) for w in evidence["windows"]] == [
        (100, 6, 0),
        (100, 0, 3),
        (100, 6, 0),
    ]
    assert "contention 6/100 = 0.06 > 0.05" in evidence["windows"][0]["why"]
    assert "storage errors 3 > 2" in evidence["windows"][1]["why"]
    assert json.loads(json.dumps(evidence)) == evidence


def test_one_consecutive_window_escalates_on_the_first_breach() -> None:
    eager = SPEC.model_copy(update={"consecutive_windows": 1})
    assert decide(eager, series(OK, BROKEN)).verdict is Verdict.ESCALATE
    assert decide(eager, series(BROKEN, OK)).verdict is Verdict.HEALTHY
    assert WindowState.BREACH.value == "breach"


# --- the loop against the emulator ---------------------------------------------------------------------

DESIRED = f"""\
controller: {{interval: 60s}}
defaults: {{project: demo-project, region: us-central1}}
services:
  - name: cagent-api
    timeout: 3600s
    env:
      DATABASE_URL: "sqlite:///work/sessions.db?_journal_mode=WAL&_busy_timeout=5000"
    database: {{env: DATABASE_URL, dialect: mattn}}
    escalation:
      window: 60s
      consecutiveWindows: 3
      minRequests: 20
      maxErrorRatio: 0.2
      contention: {{metric: {CONTENTION}, maxRate: 0.05}}
      storageErrors: {{metric: {STORAGE}, maxCount: 0}}
      cloudSql:
        instance: {CLOUD_SQL}
        databaseUrl: {{secret: cagent-api-cloudsql-url, version: latest}}
"""


class Story:
    """A controller on a ManualClock over the emulator; each `minute` feeds one window and runs a pass."""

    def __init__(
        self, emulator: Emulator, gateway: CloudRunServices, path: Path, *, manage: bool = True, **kw: Any
    ) -> None:
        self.emulator, self.gateway, self.path = emulator, gateway, path
        self.clock = ManualClock(START)
        self.manage = manage
        self.settings = kw
        if not path.exists():
            path.write_text(DESIRED)
        self.controller = self.start()

    def start(self) -> Controller:
        """A new controller process, as after a restart: nothing remembered but what the service holds."""
        reader = SignalReader(
            *signal_clients(self.emulator.address), manage_log_metrics=self.manage, retry_budget=0.3
        )
        controller = Controller(
            RunSettings(file=str(self.path), workers=1, signal_delay=0, **self.settings),
            self.gateway,
            clock=self.clock,
            metrics=Metrics(),
            rng=random.Random(3),
            signals=reader,
        )
        controller.load()
        self.controller = controller
        return controller

    def feed(self, requests: int, contention: int = 0, storage: int = 0, errors_5xx: int = 0) -> None:
        """One minute of traffic and log-based counts, in the window that ends now."""
        at = self.clock.now() - timedelta(seconds=30)
        revision = self.emulator.store.get(REFERENCE).latest_ready_revision.rsplit("/", 1)[-1]
        resource = {
            "project_id": "demo-project",
            "service_name": "cagent-api",
            "location": "us-central1",
            "revision_name": revision,
        }
        metrics = self.emulator.metrics
        for code_class, value in (("2xx", requests - errors_5xx), ("5xx", errors_5xx)):
            if value:
                metrics.add_point(
                    REQUEST_COUNT,
                    value,
                    at,
                    resource_labels=resource,
                    metric_labels={"response_code_class": code_class, "response_code": code_class[0] + "00"},
                )
        for metric, value in ((CONTENTION, contention), (STORAGE, storage)):
            if value:
                metrics.add_point(metric, value, at, resource_labels=resource)

    def minute(
        self, requests: int | None, contention: int = 0, storage: int = 0, errors_5xx: int = 0
    ) -> None:
        self.clock.advance(60)
        if requests is not None:
            self.feed(requests, contention, storage, errors_5xx)
        self.controller.run_pass()

    def escalate(self) -> None:
        """Heal the drift, then hold a storage-error breach over the three windows: the service moves."""
        self.controller.run_pass()
        for _ in range(3):
            self.minute(100, storage=3)
        assert self.service().annotations.get(LATCH_ANNOTATION) == "cloudsql"

    def service(self) -> Any:
        return self.emulator.store.get(REFERENCE)

    def env(self) -> dict[str, Any]:
        container = self.service().template.containers[0]
        return {e.name: (e.value or e.value_source.secret_key_ref.secret) for e in container.env}

    def condition(self, type_: str) -> dict[str, Any]:
        service = self.controller.status.document()["services"][0]
        return next(c for c in service["conditions"] if c["type"] == type_)


@pytest.fixture
def story(reference: Emulator, gateway: CloudRunServices, tmp_path: Path) -> Iterator[Story]:
    told = Story(reference, gateway, tmp_path / "desired-state.yaml")
    yield told
    assert told.controller.signals is not None
    told.controller.signals.close()


def latched(story: Story) -> bool:
    return bool(story.service().annotations.get(LATCH_ANNOTATION) == "cloudsql")


def test_under_the_threshold_nothing_happens(story: Story) -> None:
    story.controller.run_pass()  # the drift is healed first
    updates = story.emulator.store.calls["UpdateService"]
    for _ in range(5):
        story.minute(100, contention=5)  # 5 %: at the maximum, not above
    assert not latched(story)
    assert story.emulator.store.calls["UpdateService"] == updates
    assert story.env()["DATABASE_URL"].startswith("sqlite:")
    assert story.condition("Escalated")["reason"] == "Healthy"
    assert story.condition("NoData")["status"] == "False"


def test_a_one_window_blip_does_not_escalate(story: Story) -> None:
    story.controller.run_pass()
    for requests, storage in ((100, 0), (100, 0), (100, 7), (100, 0), (100, 0)):
        story.minute(requests, storage=storage)
        if storage:
            assert story.condition("Escalated")["reason"] == "Breaching"
    assert not latched(story)
    assert story.condition("Escalated")["reason"] == "Healthy"


def test_a_sustained_breach_escalates_once_in_one_update_and_stays_across_restarts(story: Story) -> None:
    story.controller.run_pass()
    before = story.service()
    updates = story.emulator.store.calls["UpdateService"]
    story.minute(100, contention=9)
    story.minute(100, contention=9)
    assert not latched(story), "two windows of three are not enough"
    assert story.emulator.store.calls["UpdateService"] == updates
    story.minute(100, contention=9)
    assert story.emulator.store.calls["UpdateService"] == updates + 1, "exactly one update"
    after = story.service()
    assert latched(story)
    container = after.template.containers[0]
    env = {e.name: e for e in container.env}
    assert env["DATABASE_URL"].value == ""
    assert env["DATABASE_URL"].value_source.secret_key_ref.secret == "cagent-api-cloudsql-url"
    assert env["DATABASE_URL"].value_source.secret_key_ref.version == "latest"
    assert env["LOG_LEVEL"].value == "info", "a variable the file does not name is kept"
    volumes = {v.name: v for v in after.template.volumes}
    assert list(volumes["cloudsql"].cloud_sql_instance.instances) == [CLOUD_SQL]
    assert "sessions" in volumes, "the declared SQLite volume is left in place"
    assert {m.name: m.mount_path for m in container.volume_mounts}["cloudsql"] == "/cloudsql"
    assert container.image == before.template.containers[0].image == IMAGE
    evidence = json.loads(after.annotations[EVIDENCE_ANNOTATION])
    assert evidence["to"] == CLOUD_SQL and evidence["verdict"] == "Escalate"
    assert [w["contention"] for w in evidence["windows"]] == [9, 9, 9]
    assert evidence["thresholds"]["contentionMaxRate"] == 0.05
    assert after.latest_ready_revision != before.latest_ready_revision
    assert story.condition("Ready")["message"].endswith(after.latest_ready_revision.rsplit("/", 1)[-1])
    assert story.condition("Escalated") | {"lastTransitionTime": None} == story.condition("Escalated") | {
        "status": "True",
        "reason": "Latched",
        "lastTransitionTime": None,
    }
    assert story.controller.metrics is not None
    text = story.controller.metrics.render().decode()
    assert (
        f'cloudrun_reconciler_escalations_total{{{WHERE},result="escalated",service="cagent-api"}} 1.0'
        in text
    )
    assert f'cloudrun_reconciler_escalation_state{{{WHERE},service="cagent-api"}} 1.0' in text

    story.minute(100)  # healthy again: the latch holds
    story.minute(None)  # and no data changes nothing either
    assert story.emulator.store.calls["UpdateService"] == updates + 1
    story.start()  # a restart remembers nothing in memory
    story.minute(100)
    story.minute(100, contention=9)
    assert latched(story)
    assert story.emulator.store.calls["UpdateService"] == updates + 1, "no second update after a restart"
    assert story.condition("Escalated")["reason"] == "Latched"


def test_no_data_takes_no_action_and_says_so(story: Story) -> None:
    story.controller.run_pass()
    updates = story.emulator.store.calls["UpdateService"]
    story.minute(100, contention=9)
    story.minute(100, contention=9)
    story.minute(None)  # Monitoring returns nothing for the newest window
    assert not latched(story)
    assert story.emulator.store.calls["UpdateService"] == updates
    no_data = story.condition("NoData")
    assert no_data["status"] == "True"
    assert "neither a breach nor a recovery" in no_data["message"]
    story.minute(100, contention=9)  # data again: one breaching window, the streak starts over
    assert story.condition("NoData")["status"] == "False"
    assert story.condition("Escalated")["reason"] == "Breaching"
    assert not latched(story)


def test_the_5xx_ratio_is_shown_and_degraded_names_a_revision_this_controller_created(story: Story) -> None:
    story.controller.run_pass()  # heals the drift: a revision created by this controller
    created = story.service().latest_ready_revision.rsplit("/", 1)[-1]
    story.minute(100, errors_5xx=10)
    assert story.condition("Degraded")["status"] == "False"
    story.minute(100, errors_5xx=30)
    degraded = story.condition("Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "CreatedRevisionErrors"
    assert created in degraded["message"] and "30.0%" in degraded["message"]
    signals = story.controller.status.document()["services"][0]["signals"]
    assert signals["errorRatio"] == pytest.approx(0.3)
    text = story.controller.metrics.render().decode()
    assert f'cloudrun_reconciler_service_5xx_ratio{{{WHERE},service="cagent-api"}} 0.3' in text
    story.start()  # a controller that created nothing sees only the service's ratio
    story.minute(100, errors_5xx=30)
    assert story.condition("Degraded")["reason"] == "ErrorRatio"
    assert not latched(story), "5xx alone does not escalate"


def test_a_missing_log_metric_is_reported_not_created_without_the_flag(
    reference: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    story = Story(reference, gateway, tmp_path / "d.yaml", manage=False)
    with capture_logs() as logs:
        for _ in range(3):
            story.minute(100, contention=9, storage=9)
    assert not latched(story)
    assert story.condition("NoData")["status"] == "True"
    assert "no signal metric exists" in story.condition("NoData")["message"]
    said = [(e["metric"], e["log_level"]) for e in logs if e["event"] == "log_metric_missing"]
    assert sorted(said) == [(CONTENTION, "warning"), (STORAGE, "warning")], "logged once each, not per pass"
    assert reference.store.calls["CreateLogMetric"] == 0
    assert reference.store.calls["GetLogMetric"] == 6, "asked again each pass: someone may create it"


def test_managed_log_metrics_are_created_once_with_the_error_texts(story: Story) -> None:
    story.minute(100)
    story.minute(100)
    assert story.emulator.store.calls["CreateLogMetric"] == 2
    assert story.emulator.store.calls["GetLogMetric"] == 2, "known metrics are not asked for again"
    created = story.emulator.log_metrics.get("projects/demo-project/metrics/cagent_sqlite_storage_errors")
    assert "disk I/O error" in created.filter and "OutOfOrderError" in created.filter
    assert "database disk image is malformed" in created.filter
    contention = story.emulator.log_metrics.get("projects/demo-project/metrics/cagent_sqlite_contention")
    assert "database is locked" in contention.filter


def test_signals_cost_one_list_per_signal_per_pass(story: Story) -> None:
    story.minute(100)
    calls = story.emulator.store.calls["ListTimeSeries"]
    story.minute(100)
    assert story.emulator.store.calls["ListTimeSeries"] - calls == 3  # request_count and two log metrics


def test_a_revision_that_never_becomes_ready_is_escalation_failed_and_not_retried(story: Story) -> None:
    story.controller.run_pass()
    story.emulator.store.failing_revisions = "Container failed to start: cannot reach Cloud SQL."
    updates = story.emulator.store.calls["UpdateService"]
    for _ in range(3):
        story.minute(100, storage=4)
    assert story.emulator.store.calls["UpdateService"] == updates + 1
    failed = story.condition("Escalated")
    assert failed["status"] == "False" and failed["reason"] == "EscalationFailed"
    assert "cannot reach Cloud SQL" in failed["message"]
    for _ in range(3):
        story.minute(100, storage=4)
    assert story.emulator.store.calls["UpdateService"] == updates + 1, "not retried in a loop"
    assert story.condition("Escalated")["reason"] == "EscalationFailed"
    text = story.controller.metrics.render().decode()
    assert (
        f'cloudrun_reconciler_escalations_total{{{WHERE},result="failed",service="cagent-api"}} 1.0' in text
    )


def test_a_transient_failure_of_the_escalation_is_tried_again_not_escalation_failed(story: Story) -> None:
    """UNAVAILABLE on the escalation's update decides nothing: the service backs off like any other and
    the next pass escalates it, once."""
    story.controller.run_pass()
    updates = story.emulator.store.calls["UpdateService"]
    story.minute(100, storage=4)
    story.minute(100, storage=4)
    story.emulator.store.faults.fail_next("UpdateService", 1, grpc.StatusCode.UNAVAILABLE)
    story.minute(100, storage=4)
    assert not latched(story) and story.condition("Escalated")["reason"] != "EscalationFailed"
    story.minute(100, storage=4)  # a minute later: past the 2 s backoff, the verdict still Escalate
    assert latched(story)
    assert story.emulator.store.calls["UpdateService"] == updates + 2  # the refused one and the one
    assert story.condition("Escalated")["reason"] == "Latched"
    text = story.controller.metrics.render().decode()
    assert (
        f'cloudrun_reconciler_escalations_total{{{WHERE},result="escalated",service="cagent-api"}} 1.0'
        in text
    )
    assert 'escalations_total{result="failed"' not in text


def test_dry_run_says_would_escalate_with_the_numbers_and_writes_nothing(
    reference: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    from google.cloud.logging_v2.types import LogMetric

    story = Story(reference, gateway, tmp_path / "d.yaml", dry_run=True)
    story.minute(100)
    assert reference.store.calls["CreateLogMetric"] == 0, "a dry run creates no log-based metric either"
    for metric in (CONTENTION, STORAGE):
        name = metric.rsplit("/", 1)[-1]
        reference.log_metrics.create("projects/demo-project", LogMetric.pb(LogMetric(name=name, filter="x")))
    for _ in range(3):
        story.minute(100, contention=9)
    assert reference.store.calls["UpdateService"] == 0
    assert not latched(story)
    would = story.condition("Escalated")
    assert would["reason"] == "WouldEscalate"
    assert "9/100" in would["message"]


def test_deescalate_is_the_one_way_back_and_a_dry_run_of_it_writes_nothing(
    story: Story, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    story.escalate()
    monkeypatch.setenv(EMULATOR_HOST_ENV, story.emulator.address)
    updates = story.emulator.store.calls["UpdateService"]

    assert cli.main(["deescalate", "cagent-api", "-f", str(story.path), "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "would change" in said and "volumes[cloudsql]" in said and "env[DATABASE_URL]" in said
    assert "annotations[cloudrun-reconciler.dev/escalated]" in said
    assert "cagent-api-cloudsql-url" in said and "sqlite:///work/sessions.db" in said
    assert story.emulator.store.calls["UpdateService"] == updates
    assert latched(story)

    assert cli.main(["deescalate", "cagent-api", "-f", str(story.path)]) == 0
    assert "deescalated" in capsys.readouterr().out
    assert story.emulator.store.calls["UpdateService"] == updates + 1
    service = story.service()
    assert LATCH_ANNOTATION not in service.annotations
    assert EVIDENCE_ANNOTATION not in service.annotations
    assert DEESCALATED_ANNOTATION in service.annotations
    assert story.env()["DATABASE_URL"] == "sqlite:///work/sessions.db?_journal_mode=WAL&_busy_timeout=5000"
    assert "cloudsql" not in {v.name for v in service.template.volumes}
    assert "cloudsql" not in {m.name for m in service.template.containers[0].volume_mounts}

    story.minute(100, storage=3)  # windows from before the way back do not escalate it again at once
    held = story.condition("Escalated")
    assert held["reason"] == "Deescalated" and "do not count" in held["message"]
    assert not latched(story)
    assert story.emulator.store.calls["UpdateService"] == updates + 1

    assert cli.main(["deescalate", "cagent-api", "-f", str(story.path)]) == 0
    assert "not escalated" in capsys.readouterr().out


# --- what must not stop an escalation half-way, and what must not undo one ---------------------------


def _set_env(name: str, value: str) -> Any:
    def change(service: Any) -> None:
        for env in service.template.containers[0].env:
            if env.name == name:
                env.value = value
                return
        service.template.containers[0].env.add(name=name, value=value)

    return change


def test_an_out_of_band_database_url_kept_under_report_is_still_moved_to_cloud_sql(
    reference: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(DESIRED.replace("    timeout: 3600s\n", "    timeout: 3600s\n    outOfBand: report\n"))
    story = Story(reference, gateway, path)
    story.controller.run_pass()  # adopted: the record of what this controller applied is written
    reference.store.edit(
        REFERENCE, _set_env("DATABASE_URL", "sqlite:///work/other.db?_journal_mode=WAL"), principal="user:x"
    )
    for _ in range(3):
        story.minute(100, storage=3)
    assert latched(story)
    assert story.env()["DATABASE_URL"] == "cagent-api-cloudsql-url", (
        "the latch never holds a service on SQLite"
    )
    assert story.condition("Escalated")["reason"] == "Latched"


def test_a_transient_error_on_the_escalation_write_is_retried_after_the_backoff(story: Story) -> None:
    story.controller.run_pass()
    story.minute(100, storage=3)
    story.minute(100, storage=3)
    story.emulator.store.faults.fail_next("UpdateService", 1, grpc.StatusCode.UNAVAILABLE)
    story.minute(100, storage=3)
    assert not latched(story)
    pending = story.condition("Escalated")
    assert pending["reason"] == "EscalationPending" and "retried after the backoff" in pending["message"]
    story.minute(100, storage=3)
    assert latched(story), "written again on the next pass after its backoff"
    assert story.condition("Escalated")["reason"] == "Latched"


class _DeescalatedDuringTheWrite:
    """The real gateway, but a person's deescalation lands between the pass's read and its first write."""

    def __init__(self, gateway: CloudRunServices, emulator: Emulator) -> None:
        self.gateway, self.emulator, self.armed = gateway, emulator, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    def apply(self, live: Any, changes: Any, *, validate_only: bool = False) -> Any:
        if self.armed:
            self.armed = False

            def back(service: Any) -> None:
                del service.annotations[LATCH_ANNOTATION]
                service.annotations[DEESCALATED_ANNOTATION] = START.isoformat()
                _set_env("DATABASE_URL", "sqlite:///work/sessions.db?_journal_mode=WAL&_busy_timeout=5000")(
                    service
                )

            self.emulator.store.edit(REFERENCE, back, principal="user:oncall@example.com")
        return self.gateway.apply(live, changes, validate_only=validate_only)


def test_a_deescalation_during_a_pass_is_not_undone_by_its_retry(story: Story) -> None:
    story.escalate()
    story.emulator.store.edit(REFERENCE, _set_env("LOG_LEVEL", "debug"), principal="user:x")
    story.emulator.store.edit(
        REFERENCE, lambda s: setattr(s.template.timeout, "seconds", 300), principal="user:x"
    )
    story.controller.gateway = _DeescalatedDuringTheWrite(story.gateway, story.emulator)
    updates = story.emulator.store.calls["UpdateService"]
    story.minute(100)
    assert not latched(story), "the pass met the deescalation's etag and left the service to the next pass"
    assert story.env()["DATABASE_URL"].startswith("sqlite:")
    assert story.emulator.store.calls["UpdateService"] == updates + 1  # the stale write, refused
    outcome = story.controller.status.document()["services"][0]["lastOutcome"]
    assert "deescalated meanwhile" in outcome["message"]


def test_a_latched_service_stays_on_cloud_sql_when_the_file_drops_its_escalation(
    story: Story, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    story.escalate()
    text = story.path.read_text()
    story.path.write_text(text[: text.index("    escalation:")])
    assert story.controller.poll_file()
    updates = story.emulator.store.calls["UpdateService"]
    story.minute(100)
    assert story.env()["DATABASE_URL"] == "cagent-api-cloudsql-url", "never moved back by a file edit"
    assert story.emulator.store.calls["UpdateService"] == updates
    condition = story.condition("Escalated")
    assert condition["status"] == "True" and condition["reason"] == "LatchedUndeclared"
    monkeypatch.setenv(EMULATOR_HOST_ENV, story.emulator.address)
    assert cli.main(["deescalate", "cagent-api", "-f", str(story.path)]) == 0, "the way back still works"
    assert story.env()["DATABASE_URL"].startswith("sqlite:///work/sessions.db")
    assert "cloudsql" not in {v.name for v in story.service().template.volumes}


def test_deescalate_keeps_the_cloud_sql_instances_the_file_declares(
    reference: Emulator, gateway: CloudRunServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "d.yaml"
    own = "demo-project:us-central1:reporting"
    path.write_text(
        DESIRED.replace("    timeout: 3600s\n", f"    timeout: 3600s\n    cloudSql: {{instances: [{own}]}}\n")
    )
    story = Story(reference, gateway, path)
    story.controller.run_pass()
    for _ in range(3):
        story.minute(100, storage=3)
    volumes = {v.name: v for v in story.service().template.volumes}
    assert set(volumes["cloudsql"].cloud_sql_instance.instances) == {own, CLOUD_SQL}
    monkeypatch.setenv(EMULATOR_HOST_ENV, reference.address)
    assert cli.main(["deescalate", "cagent-api", "-f", str(path)]) == 0
    volumes = {v.name: v for v in story.service().template.volumes}
    assert list(volumes["cloudsql"].cloud_sql_instance.instances) == [own]
    updates = reference.store.calls["UpdateService"]
    story.minute(100)
    assert reference.store.calls["UpdateService"] == updates, "in sync at once: no second revision"


def test_an_escalation_that_cannot_be_carried_out_is_escalation_failed_and_logged(
    reference: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(
        DESIRED.replace("    timeout: 3600s\n", "    timeout: 3600s\n    container: cagent-api-1\n")
    )
    story = Story(reference, gateway, path)
    story.controller.run_pass()
    story.emulator.store.edit(
        REFERENCE, lambda s: setattr(s.template.containers[0], "name", "renamed"), principal="user:x"
    )
    with capture_logs() as logs:
        for _ in range(3):
            story.minute(100, storage=3)
    failed = story.condition("Escalated")
    assert failed["reason"] == "EscalationFailed"
    assert any(e["event"] == "escalation_failed" and e["log_level"] == "error" for e in logs)


def test_the_evidence_annotation_keeps_the_newest_windows_only() -> None:
    from controller.escalation import EVIDENCE_WINDOWS, escalated_spec
    from desired import load_desired_text

    spec = load_desired_text(DESIRED.replace("consecutiveWindows: 3", "consecutiveWindows: 100")).services[0]
    assert spec.escalation is not None
    decision = decide(spec.escalation, series(*[BROKEN] * 100))
    assert decision.verdict is Verdict.ESCALATE
    record = json.loads(escalated_spec(spec, decision).annotations[EVIDENCE_ANNOTATION])
    assert len(record["windows"]) == EVIDENCE_WINDOWS
    assert record["windowsOmitted"] == 100 - EVIDENCE_WINDOWS
    assert record["windows"][-1]["end"] == decision.windows[-1].window.end.isoformat()
    assert len(json.dumps(record)) < 4096


def test_signals_that_cannot_be_read_are_counted_logged_once_and_healing_goes_on(story: Story) -> None:
    story.emulator.store.faults.fail_next("ListTimeSeries", 100, grpc.StatusCode.PERMISSION_DENIED)
    with capture_logs() as logs:
        story.minute(100)
        story.minute(100)
    assert story.service().template.timeout.seconds == 3600, "drift is healed without signals"
    said = [e for e in logs if e["event"] == "signals_unreadable"]
    assert len(said) == 1 and said[0]["project"] == "demo-project" and "PERMISSION_DENIED" in said[0]["error"]
    assert story.condition("NoData")["status"] == "True"
    text = story.controller.metrics.render().decode()
    assert 'cloudrun_reconciler_errors_total{kind="signals"} 2.0' in text


@pytest.mark.parametrize("method", ["ListTimeSeries", "GetLogMetric"])
def test_a_monitoring_outage_leaves_signals_unread_and_drift_healed(story: Story, method: str) -> None:
    """UNAVAILABLE on every call outlives the client's retries (a RetryError, not an API error)."""
    story.emulator.store.faults.fail_next(method, 1000, grpc.StatusCode.UNAVAILABLE)
    story.minute(100, storage=5)
    assert story.controller.passes == 1 and story.controller.last_result is not None
    assert story.service().template.timeout.seconds == 3600, "drift is healed without signals"
    no_data = story.condition("NoData")
    assert no_data["status"] == "True" and "cannot read signals" in no_data["message"]


def test_services_with_other_window_lengths_in_one_project_are_each_read_on_their_own(
    reference: Emulator,
) -> None:
    from desired import load_desired_text

    text = DESIRED.replace("window: 60s", "window: 300s").replace("name: cagent-api", "name: slow-api")
    slow = load_desired_text(text).services[0]
    fast = load_desired_text(DESIRED).services[0]
    state = load_desired_text(DESIRED).model_copy(update={"services": [fast, slow]})
    for minute in range(15):
        for name in ("cagent-api", "slow-api"):
            reference.metrics.add_point(
                REQUEST_COUNT,
                100,
                START + timedelta(minutes=minute, seconds=30),
                resource_labels={
                    "project_id": "demo-project",
                    "location": "us-central1",
                    "service_name": name,
                },
                metric_labels={"response_code_class": "2xx"},
            )
    reader = SignalReader(*signal_clients(reference.address), retry_budget=0.3)
    try:
        found = reader.read(state, START + timedelta(minutes=15))
    finally:
        reader.close()
    assert [w.requests for w in found.windows[fast.key]] == [100, 100, 100], "60 s windows: a minute each"
    assert [w.requests for w in found.windows[slow.key]] == [500, 500, 500], "300 s windows: five minutes"
    assert reference.store.calls["ListTimeSeries"] == 2, "request_count once per window length"


@pytest.mark.parametrize(
    ("value", "count"),
    [
        ({"int64_value": 7}, 7),
        ({"int64_value": 0}, 0),
        ({"double_value": 7.4}, 7),  # a DELTA is a count in its window, never a rate to multiply
        ({"double_value": float("nan")}, None),
        ({"double_value": float("inf")}, None),
        ({"double_value": -5.0}, None),
        ({"int64_value": -5}, None),
        ({"bool_value": True}, None),
    ],
)
def test_a_point_counts_only_when_it_is_a_count(value: dict[str, Any], count: int | None) -> None:
    from google.cloud.monitoring_v3 import TypedValue

    from controller.signals import _count

    assert _count(TypedValue.pb(TypedValue(**value))) == count


def test_a_latched_service_keeps_its_cloud_sql_instance_when_the_file_drops_escalation_but_not_cloud_sql(
    reference: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    own = "demo-project:us-central1:reporting"
    path = tmp_path / "d.yaml"
    path.write_text(
        DESIRED.replace("    timeout: 3600s\n", f"    timeout: 3600s\n    cloudSql: {{instances: [{own}]}}\n")
    )
    story = Story(reference, gateway, path)
    story.escalate()
    text = path.read_text()
    path.write_text(text[: text.index("    escalation:")])
    assert story.controller.poll_file()
    story.minute(100)
    volumes = {v.name: v for v in story.service().template.volumes}
    assert set(volumes["cloudsql"].cloud_sql_instance.instances) == {own, CLOUD_SQL}, "still mounted"
    assert story.env()["DATABASE_URL"] == "cagent-api-cloudsql-url"


def test_under_outofband_stop_an_unrelated_change_does_not_block_the_escalation(
    reference: Emulator, gateway: CloudRunServices, tmp_path: Path
) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(DESIRED.replace("    timeout: 3600s\n", "    timeout: 3600s\n    outOfBand: stop\n"))
    story = Story(reference, gateway, path)
    story.controller.run_pass()
    reference.store.edit(REFERENCE, lambda s: setattr(s.template.timeout, "seconds", 300), principal="user:x")
    for _ in range(3):
        story.minute(100, storage=3)
    assert latched(story), "the move is written whatever the policy"
    assert story.env()["DATABASE_URL"] == "cagent-api-cloudsql-url"
    assert story.service().template.timeout.seconds == 300, "and their change is still not reverted"


def test_an_outage_is_waited_on_once_per_pass_not_once_per_project(
    reference: Emulator, gateway: CloudRunServices
) -> None:
    from desired import load_desired_text

    specs = [load_desired_text(DESIRED.replace("demo-project", f"project-{n}")).services[0] for n in range(5)]
    state = load_desired_text(DESIRED).model_copy(update={"services": specs})
    reference.store.faults.fail_next("ListTimeSeries", 1000, grpc.StatusCode.UNAVAILABLE)
    reader = SignalReader(*signal_clients(reference.address), retry_budget=0.3)
    try:
        found = reader.read(state, START)
    finally:
        reader.close()
    assert sorted(found.errors) == [f"project-{n}" for n in range(5)]
    assert sum("not asked again" in error for error in found.errors.values()) == 4


def test_a_missing_log_metric_is_asked_for_once_per_read_across_window_lengths(
    reference: Emulator, gateway: CloudRunServices
) -> None:
    from desired import load_desired_text

    fast = load_desired_text(DESIRED).services[0]
    slow = load_desired_text(
        DESIRED.replace("window: 60s", "window: 300s").replace("name: cagent-api", "name: b")
    ).services[0]
    state = load_desired_text(DESIRED).model_copy(update={"services": [fast, slow]})
    reader = SignalReader(*signal_clients(reference.address), retry_budget=0.3)
    try:
        reader.read(state, START)
    finally:
        reader.close()
    assert reference.store.calls["GetLogMetric"] == 2, "two metrics, each asked once"
