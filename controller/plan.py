"""A plan: for each declared service, whether it is in sync, what drifted, or why it cannot be planned. Pure.

Owns the composition of per-service diffs into one fleet-wide `Plan` and the exit code it implies
(Terraform's `-detailed-exitcode`: 0 in sync, 2 drift, 1 error). It takes what was observed as an
argument and does no I/O; `controller.reconcile` feeds it and acts on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from controller.diff import (
    FieldChange,
    TargetError,
    diff_service,
    fingerprint,
    manages_template,
    owned_fields,
)
from controller.model import CLIENT_NAME, ObservedService
from desired import DesiredState, OutOfBandPolicy, ServiceKey, ServiceSpec

__all__ = [
    "EXIT_DRIFT",
    "EXIT_ERROR",
    "EXIT_IN_SYNC",
    "Plan",
    "PlanMemo",
    "PlanStatus",
    "ServicePlan",
    "applied_record",
    "out_of_band_paths",
    "plan_fleet",
    "plan_service",
]

EXIT_IN_SYNC, EXIT_ERROR, EXIT_DRIFT = 0, 1, 2


class PlanStatus(StrEnum):
    IN_SYNC = "InSync"
    DRIFTED = "Drifted"
    MISSING = "Missing"  # declared, not found live; never created: the desired file holds no image
    ERROR = "Error"  # could not be observed or matched
    BLOCKED = "Blocked"  # the desired file has unacknowledged policy errors for it: planned, never applied
    FAILED = "Failed"  # in sync as declared, but Cloud Run reports its latest revision failed

    @property
    def is_problem(self) -> bool:
        """A status that needs a person: the service cannot be brought in sync as declared."""
        return self in (PlanStatus.MISSING, PlanStatus.ERROR, PlanStatus.BLOCKED, PlanStatus.FAILED)


@dataclass(frozen=True)
class ServicePlan:
    """The plan for one service. `observed` is what it was computed from (None when missing or unread)."""

    key: ServiceKey
    status: PlanStatus
    changes: tuple[FieldChange, ...] = ()
    message: str = ""
    observed: ObservedService | None = None
    notes: tuple[str, ...] = ()  # what a person should know that changes nothing in the plan
    out_of_band: tuple[str, ...] = ()  # paths someone else changed since this controller applied them
    policy: OutOfBandPolicy = OutOfBandPolicy.REVERT

    @property
    def writes(self) -> tuple[FieldChange, ...]:
        """What apply would write: all changes, but under `report` not the ones others made, under `stop`
        nothing once others made any."""
        if not self.out_of_band or self.policy is OutOfBandPolicy.REVERT:
            return self.changes
        if self.policy is OutOfBandPolicy.STOP:
            return ()
        return tuple(change for change in self.changes if change.path not in self.out_of_band)

    @property
    def creates_revision(self) -> bool:
        return any(change.field.creates_revision for change in self.writes)


@dataclass(frozen=True)
class Plan:
    services: tuple[ServicePlan, ...]

    @property
    def drifted(self) -> tuple[ServicePlan, ...]:
        return tuple(s for s in self.services if s.status is PlanStatus.DRIFTED)

    @property
    def exit_code(self) -> int:
        if any(s.status.is_problem for s in self.services):
            return EXIT_ERROR
        return EXIT_DRIFT if self.drifted else EXIT_IN_SYNC


def plan_service(
    spec: ServiceSpec, observed: ObservedService | None, error: str = "", blocked_by: str = ""
) -> ServicePlan:
    """Plan one service from what was observed of it, or from the error met while observing it.

    `blocked_by` names the policy errors that forbid applying it; the changes are still shown."""
    if error:
        return ServicePlan(spec.key, PlanStatus.ERROR, message=error)
    if observed is None:
        return ServicePlan(
            spec.key, PlanStatus.MISSING, message="service not found; it is never created here"
        )
    try:
        changes = diff_service(spec, observed)
    except TargetError as target_error:
        return ServicePlan(spec.key, PlanStatus.ERROR, message=str(target_error), observed=observed)
    out_of_band = out_of_band_paths(changes, observed)
    notes = _out_of_band_note(out_of_band, observed, spec.out_of_band) + traffic_notes(spec, observed)
    if (
        blocked_by and changes
    ):  # a policy error blocks a write; with nothing to write there is nothing to block
        return ServicePlan(
            spec.key,
            PlanStatus.BLOCKED,
            changes,
            f"not applied: {blocked_by}",
            observed,
            notes,
            out_of_band,
            spec.out_of_band,
        )
    if observed.failure and not changes:  # nothing to write would fix it: report, do not retry
        return ServicePlan(spec.key, PlanStatus.FAILED, (), f"Cloud Run: {observed.failure}", observed, notes)
    status = PlanStatus.DRIFTED if changes else PlanStatus.IN_SYNC
    return ServicePlan(
        spec.key,
        status,
        changes,
        observed=observed,
        notes=notes,
        out_of_band=out_of_band,
        policy=spec.out_of_band,
    )


def out_of_band_paths(changes: tuple[FieldChange, ...], observed: ObservedService) -> tuple[str, ...]:
    """The drifted paths whose live value is not what this controller last applied there: someone else
    changed them. A path with no record (never written here) or still as applied is a change in the file."""
    record = dict(observed.applied)
    project = observed.key.project
    return tuple(
        c.path for c in changes if c.path in record and fingerprint(c, c.old, project) != record[c.path]
    )


def applied_record(spec: ServiceSpec, observed: ObservedService, kept: tuple[str, ...] = ()) -> str:
    """The record to write with an update: the fingerprint of every owned field as declared, except the
    `kept` paths (withheld under `outOfBand: report`), whose old record stays so they still show."""
    project = observed.key.project
    previous = dict(observed.applied)
    fields = {
        f.path: previous[f.path] if f.path in kept and f.path in previous else fingerprint(f, f.new, project)
        for f in owned_fields(spec, observed)
    }
    return json.dumps({"v": 1, "fields": dict(sorted(fields.items()))}, separators=(",", ":"))


def _out_of_band_note(
    paths: tuple[str, ...], observed: ObservedService, policy: OutOfBandPolicy
) -> tuple[str, ...]:
    """Say who made the drift when it was not made in the desired file (Terraform would not), and what the
    service's policy will do about it."""
    if not paths:
        return ()
    if observed.client == CLIENT_NAME:  # this controller wrote since (keeping their change under `report`)
        writer = "someone else, before this controller's last write"
    else:
        writer = (observed.last_modifier or "an unknown writer") + (
            f" with {observed.client}" if observed.client else ""
        )
    changed = ", ".join(paths)
    will = {
        OutOfBandPolicy.REVERT: "apply reverts it (outOfBand: revert)",
        OutOfBandPolicy.REPORT: "apply keeps it as they left it (outOfBand: report)",
        OutOfBandPolicy.STOP: "apply writes nothing to this service until a person decides (outOfBand: stop)",
    }[policy]
    return (f"changed on the service since this controller applied it: {changed}, by {writer}; {will}",)


def traffic_notes(spec: ServiceSpec, observed: ObservedService) -> tuple[str, ...]:
    """Say so when template changes would not reach all traffic: traffic is not managed here."""
    share = observed.latest_share
    if share >= 100 or not manages_template(spec):
        return ()
    others = ", ".join(observed.pinned_to) or "other revisions"
    return (
        f"the latest revision {observed.latest_ready_revision} serves {share} % of traffic; {others} "
        "serve the rest with their own settings (traffic is not managed here: "
        f"`gcloud run services update-traffic {spec.name} --to-latest --region={spec.key.region} "
        f"--project={spec.key.project}`)",
    )


def plan_fleet(
    desired: DesiredState,
    observed: Mapping[ServiceKey, ObservedService],
    errors: Mapping[ServiceKey, str] | None = None,
    blocked: Mapping[ServiceKey, str] | None = None,
    memo: PlanMemo | None = None,
) -> Plan:
    """Plan every declared service, in the order the desired file declares them; with a `memo`, a service
    planned from the same inputs as last time is not planned again."""
    errors, blocked = errors or {}, blocked or {}
    inputs = [
        (s, observed.get(s.key), errors.get(s.key, ""), blocked.get(s.key, "")) for s in desired.services
    ]
    if memo is not None:
        return Plan(memo.plans(inputs))
    return Plan(tuple(plan_service(*args) for args in inputs))


_Inputs = tuple[ServiceSpec, ObservedService | None, str, str]  # what `plan_service` is a function of


class PlanMemo:
    """The last plan of each service with what it was computed from, for a loop that plans the same fleet
    every pass. `plan_service` is a pure function of a frozen spec, a frozen observed view, an error and a
    block: when the spec and the view are the very objects of last time (the adapter hands back the same
    view for a service that did not change) and the texts are equal, last time's plan is the answer.
    Services not planned in a pass are forgotten. One per loop; not for concurrent passes."""

    def __init__(self) -> None:
        self._last: dict[ServiceKey, tuple[_Inputs, ServicePlan]] = {}

    def plans(self, inputs: list[_Inputs]) -> tuple[ServicePlan, ...]:
        last: dict[ServiceKey, tuple[_Inputs, ServicePlan]] = self._last
        now: dict[ServiceKey, tuple[_Inputs, ServicePlan]] = {}
        plans = []
        for args in inputs:
            spec, observed, error, blocked_by = args
            hit = last.get(spec.key)
            planned = hit[1] if hit is not None and _same_inputs(hit[0], args) else None
            if planned is None:
                planned = plan_service(spec, observed, error, blocked_by)
            now[spec.key] = (args, planned)
            plans.append(planned)
        self._last = now
        return tuple(plans)


def _same_inputs(old: _Inputs, new: _Inputs) -> bool:
    return old[0] is new[0] and old[1] is new[1] and old[2] == new[2] and old[3] == new[3]
