"""The long-running controller: when passes run, what they are told to skip, and what they leave behind.

Owns the loop's state between passes: the last valid desired state and the content hash it came from,
each service's backoff, the flap guard, the status board and the metrics. `tick()` does whatever is due
at the injected clock's time (poll the desired file, run a pass) and says how long until something is next
due; `serve()` is `tick()` in a loop, woken early by `request()` (a webhook) or `stop()` (SIGTERM). Tests
drive `tick()` on a `ManualClock`; nothing here sleeps.

A desired file is polled by content hash, not watched: a Cloud Storage FUSE mount delivers no inotify
events. A file that fails to load is reported (log, status, metric) and kept out; the last valid state
goes on being served until a valid file replaces it. One that is invalid when the controller starts (an
instance replaced while a bad commit is checked out) is reported the same way, and the loop runs no pass
until a valid file arrives: a restart must not turn a bad commit into a crash loop.
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from controller.clock import Clock
from controller.diff import fingerprint
from controller.escalation import (
    Decision,
    Verdict,
    decide,
    is_latched,
)
from controller.escalation_status import EscalationReport
from controller.flap import FlapGuard, FlapPolicy, Hold
from controller.metrics import Metrics, service_labels
from controller.plan import PlanMemo, PlanStatus, ServicePlan
from controller.reconcile import ApplyResult, PassResult, ServiceOutcome, ServicesGateway, reconcile
from controller.schedule import Backoff, BackoffPolicy, jittered
from controller.show import format_value
from controller.status import StatusBoard
from desired import (
    CheckedDesired,
    ControllerSettings,
    DesiredState,
    DesiredStateError,
    ServiceKey,
    ServiceSpec,
    Severity,
    check_desired_text,
)

if TYPE_CHECKING:
    from controller.signals import FleetSignals, SignalReader

__all__ = ["Controller", "RunSettings", "read_decisions", "settle_heap"]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """How the loop runs. `interval`/`dry_run` of None take the desired file's `controller` settings."""

    file: str
    dry_run: bool | None = None
    interval: float | None = None
    jitter: float = 0.1  # a pass waits between interval and interval × 1.1
    poll: float = 3.0  # how often the desired file's content hash is read
    pass_timeout: float = 120.0
    workers: int = 4  # services written at once
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    flap: FlapPolicy = field(default_factory=FlapPolicy)
    signal_delay: float = 120.0  # signal windows end this long ago: Monitoring ingests late


def settle_heap() -> None:
    """Take what is alive at start (the modules, the clients, the desired state just loaded) out of the
    garbage collector's sight, once, before the loop starts: each full collection would otherwise walk
    those hundred thousand or more objects again, at a cost that grows with the fleet, while they live as
    long as the process does. Cycles already garbage are collected first; objects frozen here and freed
    later go by reference counting, as nearly all do."""
    gc.collect()
    gc.freeze()


def read_decisions(
    state: DesiredState, reader: SignalReader, end: datetime, *, create: bool = True
) -> tuple[dict[ServiceKey, Decision], FleetSignals]:
    """Read the fleet's signals up to `end` and judge each service that declares an escalation."""
    fleet = reader.read(state, end, create=create)
    decisions = {}
    for spec in state.services:
        escalation = spec.escalation
        if escalation is None:
            continue
        project = spec.key.project
        if project in fleet.errors:
            reason = f"cannot read signals: {fleet.errors[project]}"
            decisions[spec.key] = Decision(Verdict.NO_DATA, reason, (), {})
            continue
        windows = fleet.windows.get(spec.key, [])
        decisions[spec.key] = decide(escalation, windows, fleet.missing.get(project, ()))
    return decisions, fleet


class Controller:
    """One controller: a desired file, a gateway to Cloud Run, a clock."""

    def __init__(
        self,
        settings: RunSettings,
        gateway: ServicesGateway,
        *,
        clock: Clock,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        signals: SignalReader | None = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.signals = signals
        self._plans = PlanMemo()
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.status = StatusBoard()
        self._escalations = EscalationReport(self.status, self.metrics)
        self._rng = rng or random.Random()
        self._flap = FlapGuard(settings.flap)
        self._backoff: dict[ServiceKey, Backoff] = {}
        self._retries: list[float] = []  # when backed-off services may be written again
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._requested: set[str | None] = set()
        self._desired: CheckedDesired | None = None
        self._hash = ""
        self._next_poll = 0.0
        self._next_pass = 0.0
        self._last_tick = clock.monotonic()
        self._last_pass_started: float | None = None
        self.passes = 0
        self.last_result: PassResult | None = None

    # ---- the desired file -------------------------------------------------------------------------

    @property
    def desired(self) -> CheckedDesired:
        if self._desired is None:
            raise RuntimeError("load() first")
        return self._desired

    @property
    def dry_run(self) -> bool:
        file = self._desired.state.controller if self._desired is not None else ControllerSettings()
        return bool(self.settings.dry_run) or file.dry_run

    @property
    def interval(self) -> float:
        if self.settings.interval is not None:
            return self.settings.interval
        file = self._desired.state.controller if self._desired is not None else ControllerSettings()
        return float(file.interval)

    def load(self) -> CheckedDesired:
        """Read the desired file for the first time; raise `DesiredStateError` if it is invalid."""
        text, digest = self._read()
        checked = check_desired_text(text, self.settings.file)
        self._adopt(checked, digest)
        return checked

    def load_or_wait(self) -> CheckedDesired | None:
        """Read the desired file for the first time, as `run` starts. An invalid one is reported as a
        later invalid edit is, and None returned: no pass runs until `poll_file` finds a valid file. A
        file that cannot be read at all still raises `OSError` (a wrong path is a usage error)."""
        text, digest = self._read()
        try:
            checked = check_desired_text(text, self.settings.file)
        except DesiredStateError as error:
            self._hash = digest
            self._rejected([f.describe() for f in error.findings], kept="no valid desired state yet")
            return None
        self._adopt(checked, digest)
        return checked

    def _read(self) -> tuple[str, str]:
        data = Path(self.settings.file).read_bytes()
        return data.decode("utf-8", errors="replace"), hashlib.sha256(data).hexdigest()

    def _adopt(self, checked: CheckedDesired, digest: str) -> None:
        previous = self._desired
        self._desired, self._hash = checked, digest
        self.metrics.desired_valid.set(1)
        now = self.clock.now().isoformat()
        self.status.controller(
            desiredFile={
                "path": self.settings.file,
                "sha256": digest,
                "valid": True,
                "loadedAt": now,
                "errors": [],
                "findings": [f.describe() for f in checked.findings if f.severity is not Severity.NOTE],
            }
        )
        keys = {spec.key for spec in checked.state.services}
        self.status.keep_only(keys)
        old = {spec.key: spec for spec in previous.state.services} if previous else {}
        for spec in checked.state.services:
            if spec.key in old and old[spec.key] != spec:
                self._spec_changed(spec)
        for key in set(old) - keys:
            self._backoff.pop(key, None)
            self._flap.release(key)

    def _spec_changed(self, spec: ServiceSpec) -> None:
        """A person changed what this service should be: forgive its errors, end its flap holds."""
        self._backoff.pop(spec.key, None)
        self._escalations.forget_failure(spec.key)
        for hold in self._flap.release(spec.key):
            _log.info(
                "flap_guard_released", service=spec.name, field=hold.path, reason="desired spec changed"
            )

    def poll_file(self) -> bool:
        """Read the desired file's hash; on a change, load it. True when a new valid state was adopted."""
        try:
            text, digest = self._read()
        except OSError as error:
            if self._hash != "unreadable":
                self._hash = "unreadable"
                self._rejected([f"{self.settings.file}: cannot read: {error.strerror or error}"])
            return False
        if digest == self._hash:
            return False
        try:
            checked = check_desired_text(text, self.settings.file)
        except DesiredStateError as error:
            self._hash = digest  # reported once per content, not once per poll
            self._rejected([f.describe() for f in error.findings])
            return False
        _log.info("desired_file_loaded", file=self.settings.file, sha256=digest[:12])
        self._adopt(checked, digest)
        return True

    def _rejected(
        self, errors: list[str], kept: str = "the last valid desired state is still served"
    ) -> None:
        self.metrics.desired_valid.set(0)
        self.metrics.errors.labels("desired_file").inc()
        _log.error("desired_file_invalid", file=self.settings.file, errors=errors, kept=kept)
        document = self.status.document()["controller"].get("desiredFile", {})
        self.status.controller(
            desiredFile={
                **document,
                "valid": False,
                "errors": errors,
                "rejectedAt": self.clock.now().isoformat(),
            }
        )

    # ---- the loop ---------------------------------------------------------------------------------

    def request(self, service: str | None = None) -> bool:
        """Ask for a pass now (a git webhook); with a service name, also forgive its backoff. False when
        no declared service has that name."""
        declared = self._desired.state.services if self._desired is not None else []
        if service is not None and not any(s.name == service for s in declared):
            return False
        with self._lock:
            self._requested.add(service)
        self._wake.set()
        return True

    def stop(self) -> None:
        """Start no new work: the pass in flight finishes the writes it started, and `serve` returns."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def tick(self) -> float:
        """Do what is due now; return the seconds until something is next due."""
        now = self.clock.monotonic()
        self._last_tick = now
        if now >= self._next_poll:
            self._next_poll = now + self.settings.poll
            if self.poll_file():
                self._next_pass = now  # a new desired state: a pass at once
        with self._lock:
            requested, self._requested = self._requested, set()
        if self._desired is None:  # nothing valid to work to yet: only the file is watched
            return max(0.0, self._next_poll - now)
        retry_due = bool(self._retries) and self._retries[0] <= now
        if not self.stopping and (requested or retry_due or now >= self._next_pass):
            self.run_pass(forgive={name for name in requested if name})
        now = self.clock.monotonic()
        due = [self._next_poll, self._next_pass]
        if self._retries:
            due.append(self._retries[0])
        return max(0.0, min(due) - now)

    def serve(self, wait: Callable[[float], None] | None = None) -> None:
        """`tick()` until `stop()`; `wait(seconds)` defaults to sleeping on the wake-up event."""
        while not self.stopping:
            delay = self.tick()
            if self.stopping:
                break
            if wait is not None:
                wait(delay)
            else:
                self._wake.wait(delay)
                self._wake.clear()
        _log.info("controller_stopped")

    def healthy(self) -> bool:
        """The loop is alive: it ticked, or started a pass, within the longest gap it can have."""
        now = self.clock.monotonic()
        last = max(self._last_tick, self._last_pass_started or 0.0)
        limit = self.settings.pass_timeout + self.settings.poll + 30.0
        return now - last <= limit

    @property
    def ready(self) -> bool:
        return self.passes > 0

    # ---- one pass ---------------------------------------------------------------------------------

    def run_pass(self, forgive: set[str] | None = None) -> PassResult | None:
        """One pass over the fleet as the loop runs it; None when it crashed (logged, counted, survived)."""
        checked = self.desired
        start, wall = self.clock.monotonic(), self.clock.now()
        self._last_pass_started = start
        deadline = start + self.settings.pass_timeout
        for key in [k for k in self._backoff if k.name in (forgive or set())]:
            del self._backoff[key]
        deferred = {
            key: f"backing off after {b.failures} failure(s) ({b.reason}); next write in "
            f"{b.retry_at - start:.0f}s"
            for key, b in self._backoff.items()
            if b.waiting(start)
        }
        for key, hold in self._flap.expire(start):
            reason = "the fight stopped"
            _log.info("flap_guard_released", service=key.name, field=hold.path, reason=reason)
        held = {key: frozenset(holds) for key, holds in self._flap.holds().items()}

        def proceed() -> bool:
            return not self.stopping and self.clock.monotonic() < deadline

        reconcile_id = uuid.uuid4().hex[:12]
        with structlog.contextvars.bound_contextvars(reconcile_id=reconcile_id):
            _log.info("pass_started", services=len(checked.state.services), dry_run=self.dry_run)
            try:
                decisions = self._judge(checked.state)
                result = reconcile(
                    checked.state,
                    self.gateway,
                    dry_run=self.dry_run,
                    blocked=checked.blocked_reasons(),
                    held=held,
                    deferred=deferred,
                    workers=self.settings.workers,
                    proceed=proceed,
                    decisions=decisions,
                    memo=self._plans,
                )
            except Exception as error:  # a bug in a pass must not end the loop: report it, try next time
                _log.exception("pass_crashed", error=f"{type(error).__name__}: {error}")
                self.metrics.errors.labels("pass").inc()
                self.metrics.passes.labels("crashed").inc()
                self._finish(start, wall, reconcile_id, "crashed")
                return None
            self._retries = [t for t in self._retries if t > start]
            heapq.heapify(self._retries)
            self._record(checked, result, decisions)
            cut = any(o.message.startswith("not started: the pass was cut short") for o in result.outcomes)
            outcome = "cut" if cut else ("failed" if result.failed else "ok")
            self.metrics.passes.labels(outcome).inc()
            self._finish(start, wall, reconcile_id, outcome)
            _log.info("pass_finished", result=outcome, seconds=round(self.clock.monotonic() - start, 3))
        self.last_result = result
        return result

    def _judge(self, state: DesiredState) -> dict[ServiceKey, Decision]:
        """The escalation verdicts of this pass; an escalation that failed is not attempted again."""
        if self.signals is None or not any(spec.escalation for spec in state.services):
            return {}
        end = self.clock.now() - timedelta(seconds=self.settings.signal_delay)
        decisions, fleet = read_decisions(state, self.signals, end, create=not self.dry_run)
        self._escalations.fleet = fleet
        for created in fleet.created:
            _log.warning("log_metric_created", metric=created)
        self._escalations.signal_problems(fleet)
        return self._escalations.withhold_failed(decisions)

    def _finish(self, start: float, wall: Any, reconcile_id: str, outcome: str) -> None:
        end = self.clock.monotonic()
        self.passes += 1
        self.metrics.pass_duration.observe(end - start)
        self.metrics.last_pass.set(self.clock.now().timestamp())
        self._next_pass = end + jittered(self.interval, self.settings.jitter, self._rng.random())
        self.status.controller(
            dryRun=self.dry_run,
            intervalSeconds=self.interval,
            lastPass={
                "reconcileId": reconcile_id,
                "startedAt": wall.isoformat(),
                "seconds": round(end - start, 3),
                "result": outcome,
            },
            passes=self.passes,
            nextPassInSeconds=round(self._next_pass - end, 3),
        )

    def _record(
        self, checked: CheckedDesired, result: PassResult, decisions: dict[ServiceKey, Decision]
    ) -> None:
        now, wall = self.clock.monotonic(), self.clock.now()
        at = wall.isoformat()  # once: every service's last plan and outcome carry it
        specs = {spec.key: spec for spec in checked.state.services}
        for service_plan, outcome in zip(result.plan.services, result.outcomes, strict=True):
            spec = specs[service_plan.key]
            self._account(spec, service_plan, outcome, now)
            self._flap_watch(spec, service_plan, outcome, now)
            self._report(spec, service_plan, outcome, wall, at)
            if spec.escalation is not None:
                self._escalations.record(spec, service_plan, outcome, decisions.get(spec.key), wall)
            elif is_latched(service_plan.observed):
                self._escalations.latched_undeclared(spec, service_plan, wall)

    def _account(self, spec: ServiceSpec, plan: ServicePlan, outcome: ServiceOutcome, now: float) -> None:
        """Metrics and backoff for one service's part of a pass."""
        name, ids = spec.name, service_labels(spec.key)
        for change in plan.changes:
            self.metrics.drift.labels(*ids, change.path).inc()
        # in sync as the pass leaves it: an apply is verified against what the API answered
        synced = plan.status is PlanStatus.IN_SYNC or outcome.result is ApplyResult.APPLIED
        self.metrics.child(self.metrics.in_sync, *ids).set(1 if synced else 0)
        if outcome.result in (ApplyResult.APPLIED, ApplyResult.FAILED):
            self.metrics.applies.labels(*ids, outcome.result.value).inc()
            if spec.key in self._backoff:
                self.metrics.retries.labels("backoff").inc()
        if outcome.conflicts:
            self.metrics.retries.labels("conflict").inc(outcome.conflicts)
        if self.dry_run and plan.status is PlanStatus.DRIFTED:
            _log.info(
                "would_apply",
                service=name,
                fields=[change.path for change in plan.writes],
                dry_run=True,
            )
        if outcome.error_kind:
            self.metrics.errors.labels(outcome.error_kind).inc()
            backoff = self._backoff.get(spec.key, Backoff()).failed(
                self.settings.backoff,
                now,
                permanent=outcome.error_kind == "permanent",
                reason=outcome.message,
            )
            self._backoff[spec.key] = backoff
            heapq.heappush(self._retries, backoff.retry_at)
            _log.warning(
                "service_backing_off",
                service=name,
                failures=backoff.failures,
                retry_in=round(backoff.retry_at - now, 3),
                error_kind=outcome.error_kind,
            )
        elif outcome.result in (ApplyResult.APPLIED, ApplyResult.UNCHANGED):
            self._backoff.pop(spec.key, None)

    def _flap_watch(self, spec: ServiceSpec, plan: ServicePlan, outcome: ServiceOutcome, now: float) -> None:
        observed = plan.observed
        if observed is None:
            return
        project = spec.key.project
        drifted = {c.path: fingerprint(c, c.old, project) for c in plan.changes}
        for hold in self._flap.observe(spec.key, drifted, now, observed.last_modifier):
            _log.info("flap_guard_released", service=spec.name, field=hold.path, reason="the fight stopped")
        for path in outcome.reverted:
            engaged = self._flap.reverted(spec.key, path, observed.last_modifier, now)
            if engaged is not None:
                self.metrics.errors.labels("conflict").inc()
                _log.warning(
                    "flap_guard_engaged",
                    service=spec.name,
                    field=path,
                    writer=engaged.writer,
                    reverts=engaged.reverts,
                )
        self.metrics.child(self.metrics.held_fields, *service_labels(spec.key)).set(
            len(self._flap.held(spec.key))
        )

    def _report(
        self, spec: ServiceSpec, plan: ServicePlan, outcome: ServiceOutcome, wall: Any, at: str
    ) -> None:
        key, observed = spec.key, plan.observed
        generation = observed.generation if observed else 0
        board = self.status

        def condition(type_: str, status: bool | None, reason: str, message: str) -> None:
            board.condition(key, type_, status, reason, message, generation=generation, now=wall)

        synced: dict[PlanStatus, tuple[bool | None, str]] = {
            PlanStatus.IN_SYNC: (True, "InSync"),
            PlanStatus.DRIFTED: (False, "Drifted"),
            PlanStatus.MISSING: (False, "Missing"),
            PlanStatus.ERROR: (None, "Error"),
            PlanStatus.BLOCKED: (False, "Blocked"),
            PlanStatus.FAILED: (True, "InSync"),
        }
        status, reason = synced[plan.status]
        message = plan.message or outcome.message
        if outcome.result is ApplyResult.APPLIED:
            status, reason, message = True, "Applied", outcome.message
        elif outcome.result is ApplyResult.FAILED:
            status, reason = False, "ApplyFailed"
        elif plan.status is PlanStatus.DRIFTED and self.dry_run:
            reason, message = "DryRun", "drift found; dry run: nothing written"
        elif plan.status is PlanStatus.DRIFTED:
            reason = "NotApplied"
        condition("Synced", status, reason, message or "in sync with the desired state")
        if outcome.result is ApplyResult.APPLIED and outcome.revision:  # as the write left it
            condition("Ready", True, "Ready", f"serving {outcome.revision}")
        elif observed is not None:
            failed = bool(observed.failure)
            condition(
                "Ready",
                not failed,
                "RevisionFailed" if failed else "Ready",
                observed.failure or f"serving {observed.latest_ready_revision}",
            )
        holds = self._flap.held(key)
        contested = [hold for path, hold in holds.items() if hold.contested and path in plan.out_of_band]
        if contested:
            condition("Conflict", True, "FlapGuard", "; ".join(hold.describe() for hold in contested))
        elif plan.out_of_band and plan.policy.value != "revert":
            condition("Conflict", True, "OutOfBand", "; ".join(plan.notes[:1]))
        else:
            condition("Conflict", False, "None", "no field is contested")
        backoff = self._backoff.get(key)
        board.sections(
            key,
            lastPlan={
                "status": plan.status.value,
                "message": plan.message,
                "changes": [
                    {
                        "field": c.path,
                        "old": format_value(c, c.old),
                        "new": format_value(c, c.new),
                        "byOthers": c.path in plan.out_of_band,
                    }
                    for c in plan.changes
                ],
                "notes": list(plan.notes),
                "at": at,
            },
            lastOutcome={
                "result": outcome.result.value,
                "message": outcome.message,
                "revision": outcome.revision,
                "errorKind": outcome.error_kind,
                "at": at,
            },
            backoff=None
            if backoff is None
            else {
                "failures": backoff.failures,
                "permanent": backoff.permanent,
                "retryInSeconds": round(max(0.0, backoff.retry_at - self.clock.monotonic()), 3),
                "reason": backoff.reason,
            },
            flapGuard=[_hold_json(h) for h in holds.values()],
        )


def _hold_json(hold: Hold) -> dict[str, Any]:
    return {"field": hold.path, "writer": hold.writer, "reverts": hold.reverts, "message": hold.describe()}
