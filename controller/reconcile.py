"""One reconcile pass: observe the fleet, plan it, apply the plan. The thin composer of the shell.

Owns the order of a pass and nothing else: one `ListServices` per project and region, a pure plan, then
per service a read-modify-write guarded by the etag. A stale etag means the service changed since it
was read: re-read, re-plan, retry a bounded number of times, so a plan computed on stale data is never
applied. One failed service never aborts the pass. Dry run is this same pass with the write switched off.
"""

from __future__ import annotations

import contextvars
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

import structlog

from controller.diff import FieldChange, ManagedField, TargetError, diff_service
from controller.errors import ConflictError, PermanentError, ReconcilerError
from controller.escalation import (
    DEESCALATED_ANNOTATION,
    Decision,
    Verdict,
    database_env,
    deescalated_at,
    escalated_spec,
    is_escalation_change,
    is_latched,
)
from controller.model import APPLIED_ANNOTATION, LiveService, ObservedService
from controller.plan import (
    Plan,
    PlanMemo,
    PlanStatus,
    ServicePlan,
    applied_record,
    plan_fleet,
    plan_service,
)
from controller.show import format_value
from desired import DesiredState, OutOfBandPolicy, ServiceKey, ServiceSpec

__all__ = [
    "ApplyResult",
    "PassResult",
    "ServiceOutcome",
    "ServicesGateway",
    "error_kind",
    "observe_fleet",
    "reconcile",
]

_log = structlog.get_logger(__name__)
MAX_CONFLICT_RETRIES = 3


class ServicesGateway(Protocol):
    """What a pass needs from Cloud Run; `controller.cloudrun.CloudRunServices` is the real one."""

    def list_services(self, project: str, region: str) -> list[LiveService]: ...

    def get_service(self, key: ServiceKey) -> LiveService: ...

    def apply(
        self, live: LiveService, changes: Sequence[FieldChange], *, validate_only: bool = False
    ) -> LiveService: ...


class ApplyResult(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"  # in sync already, or made so by someone else meanwhile
    SKIPPED = "skipped"  # dry run, or nothing that can be applied (missing, error)
    FAILED = "failed"


@dataclass(frozen=True)
class ServiceOutcome:
    """What happened to one service in a pass, with the etags and revision that show it."""

    key: ServiceKey
    result: ApplyResult
    message: str = ""
    applied: tuple[FieldChange, ...] = ()
    etag_before: str = ""
    etag_after: str = ""
    revision: str = ""
    error_kind: str = ""  # "transient" or "permanent" when the service could not be read or written
    reverted: tuple[str, ...] = ()  # paths written back after someone else had changed them
    # when this pass escalated the service: "escalated", "failed" (not retried until the spec changes),
    # "retrying" (a transient error: written again after the backoff) or "would" (dry run)
    escalation: str = ""
    conflicts: int = 0  # writes met a stale etag and were re-read, re-planned and tried again


@dataclass(frozen=True)
class PassResult:
    plan: Plan
    outcomes: tuple[ServiceOutcome, ...]

    @property
    def failed(self) -> bool:
        return any(o.result is ApplyResult.FAILED for o in self.outcomes) or any(
            s.status.is_problem for s in self.plan.services
        )


def observe_fleet(
    desired: DesiredState, gateway: ServicesGateway, kinds: dict[ServiceKey, str] | None = None
) -> tuple[dict[ServiceKey, LiveService], dict[ServiceKey, str]]:
    """The live state of every declared service, read with one list call per project and region.

    `kinds`, when given, receives the kind of error ("transient" or "permanent") of each unread service."""
    wanted: dict[tuple[str, str], list[ServiceKey]] = defaultdict(list)
    for spec in desired.services:
        wanted[(spec.key.project, spec.key.region)].append(spec.key)
    live: dict[ServiceKey, LiveService] = {}
    errors: dict[ServiceKey, str] = {}
    for (project, region), keys in wanted.items():
        try:
            found = {service.observed.key: service for service in gateway.list_services(project, region)}
        except ReconcilerError as error:
            _log.warning("observe_failed", project=project, region=region, error=str(error), code=error.code)
            errors.update({key: f"cannot list services: {error}" for key in keys})
            if kinds is not None:
                kinds.update({key: error_kind(error) for key in keys})
            continue
        live.update({key: found[key] for key in keys if key in found})
    return live, errors


def error_kind(error: Exception) -> str:
    """How a failure is retried: "permanent" errors wait the longest backoff, "transient" ones grow."""
    return "permanent" if isinstance(error, PermanentError | TargetError) else "transient"


Proceed = Callable[[], bool]


def reconcile(
    desired: DesiredState,
    gateway: ServicesGateway,
    *,
    dry_run: bool,
    blocked: Mapping[ServiceKey, str] | None = None,
    server_dry_run: bool = False,
    held: Mapping[ServiceKey, frozenset[str]] | None = None,
    deferred: Mapping[ServiceKey, str] | None = None,
    workers: int = 1,
    proceed: Proceed | None = None,
    decisions: Mapping[ServiceKey, Decision] | None = None,
    memo: PlanMemo | None = None,
) -> PassResult:
    """Observe, plan, and (unless `dry_run`) apply every declared service not `blocked` by policy errors.

    With `dry_run` and `server_dry_run`, each drifted service's update is sent with `validate_only`, so the
    API itself says whether it would accept it; nothing is stored. The long-running loop adds: `held`
    paths (the flap guard's) are never written; `deferred` services (backing off) are planned and not
    written; up to `workers` services are written at once; once `proceed()` is false (a pass timeout, a
    shutdown) no further service is started, and those not started say so; a `memo` (one per loop) saves
    planning again a service whose inputs did not change.

    `decisions` are the escalation verdicts on the services' signals: a service whose verdict is Escalate
    is planned as escalated to Cloud SQL (and written so, in one update, unless `dry_run`); a service that
    carries the latch is planned as escalated whatever the verdict."""
    kinds: dict[ServiceKey, str] = {}
    live, errors = observe_fleet(desired, gateway, kinds)
    desired, escalating = _effective(desired, live, decisions or {})
    observed = {key: service.observed for key, service in live.items()}
    plan = plan_fleet(desired, observed, errors, blocked, memo)
    plan = Plan(
        tuple(_with_signal_note(p, (decisions or {}).get(p.key), p.key in escalating) for p in plan.services)
    )
    held, deferred = held or {}, deferred or {}

    def bound(spec: ServiceSpec) -> structlog.BoundLogger:
        """The service's logger, bound only for a service that logs (most of a steady fleet does not)."""
        log: structlog.BoundLogger = _log.bind(
            service=spec.name, project=spec.key.project, region=spec.key.region
        )
        return log

    def one(spec: ServiceSpec, service_plan: ServicePlan) -> ServiceOutcome:
        log = bound(spec) if service_plan.changes else _log
        for change in service_plan.changes:
            log.info(
                "drift_detected",
                field=change.path,
                old=format_value(change, change.old),
                new=format_value(change, change.new),
                by_others=change.path in service_plan.out_of_band,
            )
        if service_plan.status is PlanStatus.ERROR and spec.key in kinds:
            return _not_applied(service_plan, dry_run, kinds[spec.key])
        if service_plan.status is PlanStatus.DRIFTED and dry_run and server_dry_run:
            return _validated(service_plan, live[spec.key], gateway)
        if service_plan.status is not PlanStatus.DRIFTED or dry_run:
            return _not_applied(service_plan, dry_run)
        if spec.key in deferred:
            etag = live[spec.key].observed.etag
            return ServiceOutcome(spec.key, ApplyResult.SKIPPED, deferred[spec.key], (), etag, etag)
        if proceed is not None and not proceed():
            etag = live[spec.key].observed.etag
            message = "not started: the pass was cut short (pass timeout or shutdown)"
            return ServiceOutcome(spec.key, ApplyResult.SKIPPED, message, (), etag, etag)
        hold = held.get(spec.key, frozenset())
        escalates = spec.key in escalating
        must = frozenset(c.path for c in service_plan.changes if escalates and is_escalation_change(c, spec))
        return _apply_service(spec, service_plan, live[spec.key], gateway, log, hold, must)

    def each(spec: ServiceSpec, service_plan: ServicePlan) -> ServiceOutcome:
        outcome = one(spec, service_plan)
        if spec.key not in escalating:
            return outcome
        log = _log.bind(service=spec.name)
        return _escalation_outcome(spec, service_plan, outcome, escalating[spec.key], dry_run, log)

    pairs = list(zip(desired.services, plan.services, strict=True))
    # Only a drifted service can make a call; the rest are decided here, without a thread's round trip.
    writing = [index for index, (_, p) in enumerate(pairs) if p.status is PlanStatus.DRIFTED]
    if workers <= 1 or len(writing) <= 1:
        outcomes = [each(spec, service_plan) for spec, service_plan in pairs]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
            # each task runs in a copy of this context, so the pass's bound log fields follow it
            futures = {
                index: pool.submit(contextvars.copy_context().run, each, pairs[index][0], pairs[index][1])
                for index in writing
            }
            outcomes = [
                futures[index].result() if index in futures else each(spec, service_plan)
                for index, (spec, service_plan) in enumerate(pairs)
            ]
    return PassResult(plan, tuple(outcomes))


def _effective(
    desired: DesiredState, live: Mapping[ServiceKey, LiveService], decisions: Mapping[ServiceKey, Decision]
) -> tuple[DesiredState, dict[ServiceKey, Decision]]:
    """The desired state this pass works to: latched services stay on Cloud SQL, and services whose
    verdict is Escalate move there; the services being escalated now, with their decisions."""
    escalating: dict[ServiceKey, Decision] = {}
    services = []
    for spec in desired.services:
        target = spec.escalation.cloud_sql if spec.escalation is not None else None
        found = live.get(spec.key)
        decision = decisions.get(spec.key)
        latched = is_latched(found.observed if found else None)
        if target is not None and latched:
            services.append(escalated_spec(spec))
        elif latched:  # on Cloud SQL, and the file no longer says how: its URL and instances stay as they are
            env = {name: value for name, value in spec.env.items() if name != database_env(spec)}
            services.append(spec.model_copy(update={"env": env, "cloud_sql": None}))
        elif target is not None and found is not None and decision and decision.verdict is Verdict.ESCALATE:
            back = deescalated_at(found.observed)
            if back is not None and decision.predates(back):
                services.append(spec)  # the breach was judged before a person moved it back
            else:
                services.append(escalated_spec(spec, decision))
                escalating[spec.key] = decision
        else:
            services.append(spec)
    return desired.model_copy(update={"services": services}), escalating


def _with_signal_note(service_plan: ServicePlan, decision: Decision | None, escalating: bool) -> ServicePlan:
    if decision is None:
        return service_plan
    if escalating:
        note = f"escalation to Cloud SQL: {decision.reason}"
    elif service_plan.observed is not None and is_latched(service_plan.observed):
        note = "escalated to Cloud SQL earlier (latched): `cloudrun-reconciler deescalate` is the way back"
    else:
        note = f"escalation: {decision.verdict.value}: {decision.reason}"
    return replace(service_plan, notes=(*service_plan.notes, note))


def _escalation_outcome(
    spec: ServiceSpec,
    service_plan: ServicePlan,
    outcome: ServiceOutcome,
    decision: Decision,
    dry_run: bool,
    log: structlog.BoundLogger,
) -> ServiceOutcome:
    """An escalation is done when its revision is Ready and serves all traffic. A transient error (the API
    unavailable, a stale etag that outlived its retries, a poll that failed) decides nothing: the service
    backs off like any other, and a later pass escalates it if the verdict still says so, or finds the latch
    already written. Any other failure (a revision that failed, a refusal, a policy block, a service that no
    longer matches the file) needs a person, and is not retried until the desired file changes."""
    target = spec.escalation.cloud_sql.instance if spec.escalation and spec.escalation.cloud_sql else ""
    evidence = decision.evidence()
    if dry_run:
        log.warning("would_escalate", to=target, evidence=evidence, dry_run=True)
        return replace(
            outcome,
            message=f"dry run: would escalate to Cloud SQL {target}: {decision.reason}",
            escalation="would",
        )
    if outcome.result is ApplyResult.APPLIED and "serves only" not in outcome.message:
        log.warning("escalated", to=target, revision=outcome.revision, evidence=evidence)
        return replace(
            outcome, message=f"escalated to Cloud SQL {target}: {outcome.message}", escalation="escalated"
        )
    if outcome.result is ApplyResult.FAILED and outcome.error_kind == "transient":
        log.warning("escalation_retrying", to=target, error=outcome.message, evidence=evidence)
        message = f"escalation to {target} not written yet (retried after the backoff): {outcome.message}"
        return replace(outcome, message=message, escalation="retrying")
    cannot = service_plan.status in (PlanStatus.BLOCKED, PlanStatus.ERROR, PlanStatus.FAILED)
    if outcome.result in (ApplyResult.APPLIED, ApplyResult.FAILED) or cannot:
        message = f"escalation failed: {outcome.message}"
        log.error("escalation_failed", to=target, error=outcome.message, evidence=evidence)
        return replace(
            outcome, result=ApplyResult.FAILED, message=message, error_kind="permanent", escalation="failed"
        )
    return outcome


def _validated(service_plan: ServicePlan, live: LiveService, gateway: ServicesGateway) -> ServiceOutcome:
    """The API's verdict on the update the plan would send."""
    etag = live.observed.etag
    try:
        gateway.apply(live, service_plan.changes, validate_only=True)
    except ReconcilerError as error:
        message = f"server dry run: rejected: {error}"
        return ServiceOutcome(
            service_plan.key, ApplyResult.FAILED, message, etag_before=etag, etag_after=etag
        )
    message = "server dry run: the API accepts this update (nothing written)"
    return ServiceOutcome(service_plan.key, ApplyResult.SKIPPED, message, etag_before=etag, etag_after=etag)


@dataclass(frozen=True)
class _Decision:
    """What to write for a drifted service under its out-of-band policy, or why nothing is written."""

    changes: tuple[FieldChange, ...] = ()
    kept: tuple[str, ...] = ()  # someone else's changes left in place: outOfBand report, then flap holds
    held: int = 0  # how many of `kept`, at its end, the flap guard holds
    outcome: ServiceOutcome | None = None


def _decide(
    spec: ServiceSpec,
    service_plan: ServicePlan,
    etag: str,
    held: frozenset[str] = frozenset(),
    must: frozenset[str] = frozenset(),
) -> _Decision:
    """Revert writes everything; report writes only what changed in the file; stop writes nothing.
    Paths `held` by the flap guard are kept as they are, whatever the policy. Paths that `must` be
    written (an escalation's) are written whatever the policy and the holds."""
    decision = _decide_policy(spec, service_plan, etag, must)
    if not held or decision.outcome is not None:
        return decision
    kept = tuple(c.path for c in decision.changes if c.path in held and c.path not in must)
    if not kept:
        return decision
    changes = tuple(c for c in decision.changes if c.path not in kept)
    if not changes:
        message = f"not corrected (flap guard holds {', '.join(kept)}): see the Conflict condition"
        outcome = ServiceOutcome(spec.key, ApplyResult.SKIPPED, message, etag_before=etag, etag_after=etag)
        return _Decision(outcome=outcome)
    return _Decision(changes, (*decision.kept, *kept), len(kept))


def _decide_policy(
    spec: ServiceSpec, service_plan: ServicePlan, etag: str, must: frozenset[str] = frozenset()
) -> _Decision:
    others = tuple(path for path in service_plan.out_of_band if path not in must)
    if not others or spec.out_of_band is OutOfBandPolicy.REVERT:
        return _Decision(service_plan.changes)
    observed = service_plan.observed
    writer = observed.last_modifier if observed and observed.last_modifier else "someone else"
    changed = f"{writer} changed {', '.join(others)} since this controller applied it"
    if spec.out_of_band is OutOfBandPolicy.STOP and must:  # the move alone; nothing else is reverted
        return _Decision(
            tuple(c for c in service_plan.changes if c.path in must),
            tuple(c.path for c in service_plan.changes if c.path not in must),
        )
    if spec.out_of_band is OutOfBandPolicy.STOP:
        message = f"stopped (outOfBand: stop): {changed}; adopt it in the desired file, or revert it by hand"
        return _Decision(
            outcome=ServiceOutcome(spec.key, ApplyResult.FAILED, message, etag_before=etag, etag_after=etag)
        )
    ours = tuple(change for change in service_plan.changes if change.path not in others)
    if not ours:
        message = f"not reverted (outOfBand: report): {changed}"
        return _Decision(
            outcome=ServiceOutcome(spec.key, ApplyResult.SKIPPED, message, etag_before=etag, etag_after=etag)
        )
    return _Decision(ours, others)


def _not_applied(service_plan: ServicePlan, dry_run: bool, kind: str = "") -> ServiceOutcome:
    etag = service_plan.observed.etag if service_plan.observed else ""
    if service_plan.status is PlanStatus.IN_SYNC:
        return ServiceOutcome(
            service_plan.key, ApplyResult.UNCHANGED, "in sync", etag_before=etag, etag_after=etag
        )
    reason = "dry run: nothing written" if dry_run and service_plan.changes else service_plan.message
    return ServiceOutcome(
        service_plan.key, ApplyResult.SKIPPED, reason, etag_before=etag, etag_after=etag, error_kind=kind
    )


def _apply_service(
    spec: ServiceSpec,
    service_plan: ServicePlan,
    live: LiveService,
    gateway: ServicesGateway,
    log: structlog.BoundLogger,
    held: frozenset[str] = frozenset(),
    must: frozenset[str] = frozenset(),
) -> ServiceOutcome:
    """The write, re-read and re-planned after each stale etag; the outcome counts those conflicts."""
    conflicts: list[ConflictError] = []
    outcome = _write(spec, service_plan, live, gateway, log, held, must, conflicts)
    return replace(outcome, conflicts=len(conflicts)) if conflicts else outcome


def _write(
    spec: ServiceSpec,
    service_plan: ServicePlan,
    live: LiveService,
    gateway: ServicesGateway,
    log: structlog.BoundLogger,
    held: frozenset[str],
    must: frozenset[str],
    conflicts: list[ConflictError],
) -> ServiceOutcome:
    before = live.observed.etag
    state = _escalation_state(live.observed)
    for attempt in range(1, MAX_CONFLICT_RETRIES + 2):
        decision = _decide(spec, service_plan, live.observed.etag, held, must)
        if decision.outcome is not None and held and decision.outcome.message.startswith("not corrected"):
            log.info("flap_guard_holds", fields=sorted(held), result=decision.outcome.result.value)
            return decision.outcome
        if decision.outcome is not None:
            log.warning(
                "out_of_band_change",
                policy=str(spec.out_of_band),
                fields=list(service_plan.out_of_band),
                writer=live.observed.last_modifier,
                result=decision.outcome.result.value,
            )
            return decision.outcome
        record = FieldChange(
            ManagedField.ANNOTATION,
            None,
            applied_record(spec, live.observed, decision.kept),
            key=APPLIED_ANNOTATION,
        )
        try:
            updated = gateway.apply(live, (*decision.changes, record))
        except ConflictError as error:
            conflicts.append(error)
            log.info("apply_conflict", attempt=attempt, error=str(error))
            try:
                live = gateway.get_service(spec.key)
            except ReconcilerError as reread_error:
                message = f"re-read after a conflict failed: {reread_error}"
                return _failed(spec.key, message, before, log, error_kind(reread_error))
            if _escalation_state(live.observed) != state:  # this pass planned with the other backend
                message = "escalated or deescalated meanwhile: the next pass plans it anew"
                return ServiceOutcome(
                    spec.key, ApplyResult.SKIPPED, message, etag_before=before, etag_after=live.observed.etag
                )
            service_plan = plan_service(spec, live.observed)
            if service_plan.status is PlanStatus.IN_SYNC:
                return ServiceOutcome(
                    spec.key,
                    ApplyResult.UNCHANGED,
                    "in sync after a concurrent change",
                    etag_before=before,
                    etag_after=live.observed.etag,
                )
            if service_plan.status is not PlanStatus.DRIFTED:
                message = f"after a concurrent change: {service_plan.message}"
                return _failed(spec.key, message, before, log, "permanent")
            continue
        except ReconcilerError as error:
            return _failed(spec.key, str(error), before, log, error_kind(error))
        reverted = tuple(c.path for c in decision.changes if c.path in service_plan.out_of_band)
        return _verified(spec, decision, before, updated, log, reverted)
    message = f"gave up: {MAX_CONFLICT_RETRIES + 1} writes in a row met a concurrent change"
    return _failed(spec.key, message, before, log, "transient")


def _escalation_state(observed: ObservedService) -> tuple[bool, str]:
    """What the service holds of its escalation: the latch, and when it was last deescalated."""
    return is_latched(observed), observed.annotation(DEESCALATED_ANNOTATION) or ""


def _verified(
    spec: ServiceSpec,
    decision: _Decision,
    before: str,
    updated: LiveService,
    log: structlog.BoundLogger,
    reverted: tuple[str, ...] = (),
) -> ServiceOutcome:
    """The outcome as the API reports it after the write: in sync but for what was kept, and which
    revision serves."""
    observed, changes = updated.observed, decision.changes
    try:
        residual = [c for c in diff_service(spec, observed) if c.path not in decision.kept]
    except TargetError as error:
        message = f"the service no longer matches the spec: {error}"
        return _failed(spec.key, message, before, log, "permanent")
    if residual:
        fields = ", ".join(change.path for change in residual)
        message = f"the API accepted the update but still differs in {fields}"
        return _failed(spec.key, message, before, log, "permanent")
    revision = observed.latest_ready_revision
    serving = f"serving revision {revision}"
    if observed.latest_share < 100:
        serving = f"revision {revision} serves only {observed.latest_share} % of traffic"
        log.warning("revision_not_serving", revision=revision, share=observed.latest_share)
    split = len(decision.kept) - decision.held
    reported, held = decision.kept[:split], decision.kept[split:]
    kept = f"; kept {', '.join(reported)} (outOfBand: {spec.out_of_band})" if reported else ""
    kept += f"; flap guard holds {', '.join(held)}: see the Conflict condition" if held else ""
    log.info(
        "applied",
        fields=[c.path for c in changes],
        reverted=list(reverted),
        etag=observed.etag,
        revision=revision,
    )
    message = f"{len(changes)} field(s) updated; {serving}{kept}"
    return ServiceOutcome(
        spec.key,
        ApplyResult.APPLIED,
        message,
        changes,
        before,
        observed.etag,
        revision,
        reverted=reverted,
    )


def _failed(
    key: ServiceKey, message: str, etag: str, log: structlog.BoundLogger, kind: str
) -> ServiceOutcome:
    log.error("apply_failed", error=message, error_kind=kind)
    return ServiceOutcome(
        key, ApplyResult.FAILED, message, etag_before=etag, etag_after=etag, error_kind=kind
    )
