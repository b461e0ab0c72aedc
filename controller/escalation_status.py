"""What the loop reports of each service's escalation, and what it remembers of it between passes.

Owns the conditions `Escalated`, `NoData` and `Degraded`, the `signals` and `escalation` sections of
`/status`, the escalation gauges and counters, and the log events of signal problems (each once while it
lasts). Between passes it remembers only what a restart may forget: the revision this controller last
created per service (to name it when it breaches), and the escalations that failed (not attempted again
until the service's spec changes). What must survive a restart, the latch and its evidence, is on the
service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from controller.escalation import (
    EVIDENCE_ANNOTATION,
    Decision,
    Verdict,
    database_env,
    deescalated_at,
    error_ratio,
    is_latched,
    revision_error_ratio,
)
from controller.metrics import Metrics, service_labels
from controller.plan import ServicePlan
from controller.reconcile import ApplyResult, ServiceOutcome
from controller.status import StatusBoard
from desired import ServiceKey, ServiceSpec

if TYPE_CHECKING:
    from controller.model import ObservedService
    from controller.signals import FleetSignals

__all__ = ["EscalationReport"]

_log = structlog.get_logger(__name__)


class EscalationReport:
    """The escalation side of a controller's status board and metrics."""

    def __init__(self, status: StatusBoard, metrics: Metrics) -> None:
        self.status, self.metrics = status, metrics
        self.fleet: FleetSignals | None = None  # what the last read of the signals found
        self.failed: dict[ServiceKey, str] = {}  # not attempted again until the spec changes
        self._created: dict[ServiceKey, str] = {}  # the revision this controller last created, per service
        self._said: dict[str, str] = {}  # signal problems logged, so each is logged once while it lasts

    def forget_failure(self, key: ServiceKey) -> None:
        """The spec changed: a failed escalation may be tried again."""
        self.failed.pop(key, None)

    def withhold_failed(self, decisions: Mapping[ServiceKey, Decision]) -> dict[ServiceKey, Decision]:
        """The verdicts, with an escalation that failed in this process not attempted again."""
        held = dict(decisions)
        for key, message in self.failed.items():
            decision = held.get(key)
            if decision is not None and decision.verdict is Verdict.ESCALATE:
                reason = f"not attempted again after it failed ({message}); change the desired file to retry"
                held[key] = Decision(Verdict.BREACHING, reason, decision.windows, decision.thresholds)
        return held

    def signal_problems(self, fleet: FleetSignals) -> None:
        """Signals that could not be read, and signal metrics that do not exist: counted every pass,
        logged when they start or change (not every 30 s while they last)."""
        now: dict[str, str] = {}
        for project, error in fleet.errors.items():
            self.metrics.errors.labels("signals").inc()
            now[f"unreadable {project}"] = error
        for project, missing in fleet.missing.items():
            for metric in missing:
                now[f"missing {project} {metric}"] = metric
        for key, value in now.items():
            if self._said.get(key) == value:
                continue
            kind, project = key.split(" ", 2)[:2]
            if kind == "unreadable":
                _log.warning("signals_unreadable", project=project, error=value)
            else:
                fix = "create it, or run with --manage-log-metric"
                _log.warning("log_metric_missing", project=project, metric=value, fix=fix)
        self._said = now

    def record(
        self,
        spec: ServiceSpec,
        plan: ServicePlan,
        outcome: ServiceOutcome,
        decision: Decision | None,
        wall: datetime,
    ) -> None:
        """Conditions Escalated, NoData and Degraded; the signals and the escalation in status and metrics."""
        key, observed = spec.key, plan.observed
        escalation = spec.escalation
        assert escalation is not None
        board = self.status

        def condition(type_: str, status: bool | None, reason: str, message: str) -> None:
            generation = observed.generation if observed else 0
            board.condition(key, type_, status, reason, message, generation=generation, now=wall)

        if outcome.result is ApplyResult.APPLIED and outcome.revision:
            self._created[key] = outcome.revision
        if outcome.escalation == "failed":
            self.failed[key] = outcome.message
        if outcome.escalation in ("escalated", "failed"):
            self.metrics.escalations.labels(*service_labels(key), outcome.escalation).inc()
        latched = is_latched(observed)
        failure = observed.failure if observed is not None and latched else ""
        evidence: Any = None
        if latched and observed is not None:
            try:
                evidence = json.loads(observed.annotation(EVIDENCE_ANNOTATION) or "null")
            except ValueError:
                evidence = None
        if outcome.escalation == "failed" or failure:
            state, value = "EscalationFailed", -1
            condition(
                "Escalated", False, "EscalationFailed", outcome.message if outcome.escalation else failure
            )
        elif latched or outcome.escalation == "escalated":
            state, value = "Escalated", 1
            if outcome.escalation == "escalated" and decision is not None:
                evidence = {"to": _target(spec), **decision.evidence()}
            way_back = "`cloudrun-reconciler deescalate` is the way back"
            message = outcome.message if outcome.escalation == "escalated" else "on Cloud SQL"
            condition("Escalated", True, "Latched", f"{message}; {way_back}")
        elif outcome.escalation == "would":
            state, value = "WouldEscalate", 0
            condition("Escalated", False, "WouldEscalate", outcome.message)
        elif decision is not None and (back := _held_by_deescalation(decision, observed)):
            state, value = "SQLite", 0
            condition("Escalated", False, "Deescalated", back)
        elif decision is not None and decision.verdict is Verdict.ESCALATE:
            state, value = "EscalationPending", 0
            condition("Escalated", False, "EscalationPending", outcome.message or decision.reason)
        else:
            state, value = "SQLite", 0
            verdict = decision.verdict.value if decision else "NotRead"
            condition("Escalated", False, verdict, decision.reason if decision else "signals not read")
        self.metrics.child(self.metrics.escalation, *service_labels(key)).set(value)
        no_data = decision is not None and decision.verdict is Verdict.NO_DATA
        condition(
            "NoData",
            no_data,
            "NoData" if no_data else "DataPresent",
            decision.reason if no_data and decision else "",
        )
        windows = [judged.window for judged in decision.windows] if decision else []
        ratio = error_ratio(windows)
        if ratio is not None:
            self.metrics.child(self.metrics.error_ratio, *service_labels(key)).set(ratio)
        self._degraded(spec, windows, ratio, condition)
        board.sections(
            key,
            signals=None
            if decision is None
            else {
                "errorRatio": ratio,
                **decision.evidence(),
                "missingMetrics": list((self.fleet.missing if self.fleet else {}).get(key.project, ())),
            },
            escalation={"state": state, "evidence": evidence},
        )

    def latched_undeclared(self, spec: ServiceSpec, plan: ServicePlan, wall: datetime) -> None:
        """A service on Cloud SQL whose `escalation:` is gone from the file: it stays there, and says so."""
        generation = plan.observed.generation if plan.observed else 0
        message = (
            f"on Cloud SQL, latched, and the desired file declares no escalation: {database_env(spec)} is "
            "left as it is; `cloudrun-reconciler deescalate` is the way back"
        )
        self.status.condition(
            spec.key, "Escalated", True, "LatchedUndeclared", message, generation=generation, now=wall
        )
        self.metrics.child(self.metrics.escalation, *service_labels(spec.key)).set(1)
        self.status.sections(spec.key, escalation={"state": "Escalated", "evidence": None})

    def _degraded(
        self,
        spec: ServiceSpec,
        windows: list[Any],
        ratio: float | None,
        condition: Callable[[str, bool | None, str, str], None],
    ) -> None:
        escalation = spec.escalation
        assert escalation is not None
        limit = escalation.max_error_ratio
        if limit is None:
            return
        created = self._created.get(spec.key, "")
        own = revision_error_ratio(windows, created) if created else None
        if own is not None and own[0] > limit and own[1] >= escalation.min_requests:
            message = (
                f"revision {created}, created by this controller, answers {own[0]:.1%} 5xx (max {limit:.1%})"
            )
            _log.warning("created_revision_degraded", service=spec.name, revision=created, ratio=own[0])
            condition("Degraded", True, "CreatedRevisionErrors", message)
        elif ratio is not None and ratio > limit:
            condition("Degraded", True, "ErrorRatio", f"5xx ratio {ratio:.1%} above the maximum {limit:.1%}")
        elif ratio is None:
            condition("Degraded", None, "NoData", "no request data")
        else:
            condition("Degraded", False, "ErrorRatio", f"5xx ratio {ratio:.1%} within {limit:.1%}")


def _held_by_deescalation(decision: Decision, observed: ObservedService | None) -> str:
    """Why a breach does not escalate again, when its windows began before a person moved the service back."""
    back = deescalated_at(observed)
    if decision.verdict is not Verdict.ESCALATE or back is None or not decision.predates(back):
        return ""
    return (
        f"moved back to SQLite by deescalate at {back.isoformat(timespec='seconds')}; breaching windows "
        f"from before it do not count ({decision.reason})"
    )


def _target(spec: ServiceSpec) -> str:
    escalation = spec.escalation
    return escalation.cloud_sql.instance if escalation and escalation.cloud_sql else ""
