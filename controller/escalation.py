"""When to move a service from SQLite to Cloud SQL, and what that move is. Pure.

Owns the decision and the shape of the escalated service. The decision is a function of the signal windows
(oldest first), the thresholds and nothing else: a window with no request data is `NoData`, one with fewer
requests than `minRequests` is not judged, and only a breach in each of the last `consecutiveWindows`
windows escalates. Two signals are judged apart: contention (`database is locked`) as a rate per request
against `contention.maxRate`, and storage errors (`disk I/O error`, a malformed image, gcsfuse's
`OutOfOrderError`) as a count against `storageErrors.maxCount`. A breach is strictly above its threshold.
Every decision carries its evidence: each window's numbers and verdict, and the thresholds.

The escalated service is the declared one with the database env var set to the Cloud SQL URL (or secret),
the Cloud SQL instance mounted at `/cloudsql`, and the latch annotation that keeps it so across restarts;
only `deescalate` removes it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from controller.diff import FieldChange, ManagedField, select_container
from controller.model import CloudSqlVolume, ObservedService
from desired import CloudSqlSpec, EscalationSpec, ServiceSpec

__all__ = [
    "DEESCALATED_ANNOTATION",
    "EVIDENCE_ANNOTATION",
    "LATCH_ANNOTATION",
    "LATCH_VALUE",
    "Decision",
    "Verdict",
    "Window",
    "WindowState",
    "database_env",
    "decide",
    "deescalated_at",
    "deescalation_changes",
    "error_ratio",
    "escalated_spec",
    "is_escalation_change",
    "is_latched",
]

LATCH_ANNOTATION = "cloudrun-reconciler.dev/escalated"
LATCH_VALUE = "cloudsql"
EVIDENCE_ANNOTATION = "cloudrun-reconciler.dev/escalation-evidence"
DEESCALATED_ANNOTATION = "cloudrun-reconciler.dev/deescalated-at"  # windows before it no longer count
EVIDENCE_WINDOWS = 12  # the most windows the evidence annotation keeps (a few KiB)


@dataclass(frozen=True)
class Window:
    """One alignment window of a service's signals. `requests` None: no request data at all."""

    end: datetime
    requests: int | None
    errors_5xx: int = 0
    contention: int = 0  # `database is locked` log entries
    storage: int = 0  # storage error log entries
    by_revision: tuple[tuple[str, int, int], ...] = ()  # (revision, requests, 5xx)


class WindowState(StrEnum):
    BREACH = "breach"
    OK = "ok"
    LOW_TRAFFIC = "low-traffic"  # fewer requests than minRequests: not judged
    NO_DATA = "no-data"


class Verdict(StrEnum):
    HEALTHY = "Healthy"
    BREACHING = "Breaching"  # the newest windows breach, not yet for long enough
    ESCALATE = "Escalate"
    LOW_TRAFFIC = "LowTraffic"
    NO_DATA = "NoData"


@dataclass(frozen=True)
class Judged:
    window: Window
    state: WindowState
    why: str


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    windows: tuple[Judged, ...]
    thresholds: dict[str, Any]
    window_seconds: int = 0

    def predates(self, moment: datetime) -> bool:
        """Whether any window this decision rests on began before `moment`."""
        return any(j.window.end.timestamp() - self.window_seconds < moment.timestamp() for j in self.windows)

    def evidence(self) -> dict[str, Any]:
        """What the decision rests on, as JSON: thresholds and each window's numbers and state."""
        return {
            "verdict": self.verdict.value,
            "reason": self.reason,
            "thresholds": self.thresholds,
            "windows": [
                {
                    "end": judged.window.end.isoformat(),
                    "requests": judged.window.requests,
                    "contention": judged.window.contention,
                    "storageErrors": judged.window.storage,
                    "state": judged.state.value,
                    "why": judged.why,
                }
                for judged in self.windows
            ],
        }


def _thresholds(spec: EscalationSpec, missing: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "window": f"{spec.window}s",
        "consecutiveWindows": spec.consecutive_windows,
        "minRequests": spec.min_requests,
    }
    if spec.contention is not None and spec.contention.metric not in missing:
        found["contentionMaxRate"] = spec.contention.max_rate
    if spec.storage_errors is not None and spec.storage_errors.metric not in missing:
        found["storageErrorsMaxCount"] = spec.storage_errors.max_count
    return found


def _judge(spec: EscalationSpec, window: Window, missing: Sequence[str]) -> Judged:
    if window.requests is None:
        return Judged(window, WindowState.NO_DATA, "no request data")
    if window.requests < spec.min_requests:
        return Judged(window, WindowState.LOW_TRAFFIC, f"{window.requests} requests < {spec.min_requests}")
    breaches = []
    storage, contention = spec.storage_errors, spec.contention
    if storage is not None and storage.metric not in missing and window.storage > storage.max_count:
        breaches.append(f"storage errors {window.storage} > {storage.max_count}")
    if contention is not None and contention.metric not in missing and window.requests:
        rate = window.contention / window.requests
        if rate > contention.max_rate:
            breaches.append(
                f"contention {window.contention}/{window.requests} = {rate:.4g} > {contention.max_rate}"
            )
    if breaches:
        return Judged(window, WindowState.BREACH, "; ".join(breaches))
    return Judged(window, WindowState.OK, "within thresholds")


def decide(spec: EscalationSpec, windows: Sequence[Window], missing: Sequence[str] = ()) -> Decision:
    """The verdict on the last `consecutiveWindows` windows (oldest first). `missing` names signal metrics
    that do not exist: they are not judged, and with every signal missing there is no data."""
    recent = list(windows)[-spec.consecutive_windows :]
    judged = tuple(_judge(spec, window, missing) for window in recent)
    thresholds = _thresholds(spec, missing)
    needed = spec.consecutive_windows

    def decision(verdict: Verdict, reason: str) -> Decision:
        return Decision(verdict, reason, judged, thresholds, spec.window)

    signals = [s.metric for s in (spec.contention, spec.storage_errors) if s is not None]
    if signals and all(metric in missing for metric in signals):
        return decision(Verdict.NO_DATA, f"no signal metric exists: {', '.join(signals)}")
    if not judged or judged[-1].state is WindowState.NO_DATA:
        return decision(
            Verdict.NO_DATA, "no request data in the latest window: neither a breach nor a recovery"
        )
    streak = 0
    for item in reversed(judged):
        if item.state is not WindowState.BREACH:
            break
        streak += 1
    if streak >= needed and len(judged) >= needed:
        held = f"{streak} consecutive windows" if streak > 1 else "the window"
        return decision(Verdict.ESCALATE, f"breached in {held}: {judged[-1].why}")
    if streak:
        return decision(
            Verdict.BREACHING, f"breached in {streak} of {needed} consecutive windows: {judged[-1].why}"
        )
    if judged[-1].state is WindowState.LOW_TRAFFIC:
        return decision(Verdict.LOW_TRAFFIC, f"too few requests to judge: {judged[-1].why}")
    return decision(Verdict.HEALTHY, "within thresholds")


def error_ratio(windows: Sequence[Window]) -> float | None:
    """The 5xx share of requests in the newest window with requests, or None."""
    for window in reversed(windows):
        if window.requests:
            return window.errors_5xx / window.requests
    return None


def revision_error_ratio(windows: Sequence[Window], revision: str) -> tuple[float, int] | None:
    """The 5xx share and request count of one revision in the newest window that served it."""
    for window in reversed(windows):
        for name, requests, errors in window.by_revision:
            if name == revision and requests:
                return errors / requests, requests
    return None


def is_latched(observed: ObservedService | None) -> bool:
    return observed is not None and observed.annotation(LATCH_ANNOTATION) == LATCH_VALUE


def database_env(spec: ServiceSpec) -> str:
    """The env var that holds the service's database URL."""
    return spec.database.env if spec.database is not None else "DATABASE_URL"


def is_escalation_change(change: FieldChange, spec: ServiceSpec) -> bool:
    """Whether `change`, planned for the escalated `spec`, is part of the move to Cloud SQL itself: the
    database URL, the Cloud SQL volume and its mount, the latch and its evidence. No out-of-band policy
    and no flap hold may leave one of them out, or the latch would hold a service still on SQLite."""
    volume = spec.cloud_sql.volume if spec.cloud_sql is not None else "cloudsql"
    wanted = {
        ManagedField.ENV: database_env(spec),
        ManagedField.CLOUD_SQL_VOLUME: volume,
        ManagedField.VOLUME_MOUNT: volume,
    }
    if change.field is ManagedField.ANNOTATION:
        return change.key in (LATCH_ANNOTATION, EVIDENCE_ANNOTATION)
    return wanted.get(change.field) == change.key


def escalated_spec(spec: ServiceSpec, decision: Decision | None = None) -> ServiceSpec:
    """The declared service moved to Cloud SQL. With a `decision`, its evidence is written with the latch
    (the escalation itself); without, the latch alone is owned (a service escalated earlier)."""
    escalation = spec.escalation
    if escalation is None or escalation.cloud_sql is None:
        raise ValueError(f"{spec.name} declares no Cloud SQL target")
    target = escalation.cloud_sql
    env_name = database_env(spec)
    declared = spec.cloud_sql.instances if spec.cloud_sql is not None else []
    cloud_sql = (spec.cloud_sql or CloudSqlSpec(instances=[target.instance])).model_copy(
        update={"instances": sorted({*declared, target.instance})}
    )
    annotations = {**spec.annotations, LATCH_ANNOTATION: LATCH_VALUE}
    if decision is not None:
        at = decision.windows[-1].window.end.isoformat() if decision.windows else ""
        record = {"at": at, "to": target.instance, **decision.evidence()}
        windows = record["windows"]
        if len(windows) > EVIDENCE_WINDOWS:  # an annotation is no archive: the newest windows tell it
            record["windows"] = windows[-EVIDENCE_WINDOWS:]
            record["windowsOmitted"] = len(windows) - EVIDENCE_WINDOWS
        annotations[EVIDENCE_ANNOTATION] = json.dumps(record, separators=(",", ":"))
    return spec.model_copy(
        update={
            "env": {**spec.env, env_name: target.database_url},
            "cloud_sql": cloud_sql,
            "annotations": annotations,
        }
    )


def deescalated_at(observed: ObservedService | None) -> datetime | None:
    """When `deescalate` last moved the service back, from its annotation."""
    text = (observed.annotation(DEESCALATED_ANNOTATION) or "") if observed else ""
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def deescalation_changes(
    spec: ServiceSpec, observed: ObservedService, now: datetime
) -> tuple[FieldChange, ...]:
    """What `deescalate` writes: the database env var back to the declared SQLite value, the Cloud SQL
    volume back to what the file declares (removed, with its mount, when it declares none), the latch
    cleared, and the time of it, so that windows from before it cannot escalate the service again at once.
    It works from what the service holds, so it still works once the file's `escalation:` is gone."""
    env_name = database_env(spec)
    if env_name not in spec.env:
        raise ValueError(f"{spec.name} declares no value for {env_name} to go back to")
    container = select_container(spec, observed.containers)
    old, new = container.env_value(env_name), spec.env[env_name]
    changes = [FieldChange(ManagedField.ENV, old, new, container.index, container.label, env_name)]
    volume = spec.cloud_sql.volume if spec.cloud_sql is not None else "cloudsql"
    live = observed.volume(volume)
    if isinstance(live, CloudSqlVolume) and spec.cloud_sql is None:
        changes.append(FieldChange(ManagedField.CLOUD_SQL_VOLUME, live, None, key=volume))
        path = container.mount_path(volume)
        if path is not None:
            changes.append(
                FieldChange(ManagedField.VOLUME_MOUNT, path, None, container.index, container.label, volume)
            )
    elif isinstance(live, CloudSqlVolume) and spec.cloud_sql is not None:
        declared = CloudSqlVolume(frozenset(spec.cloud_sql.instances))
        if declared != live:  # the instance the escalation added goes; the file's own stay
            changes.append(FieldChange(ManagedField.CLOUD_SQL_VOLUME, live, declared, key=volume))
    annotations = dict(observed.annotations)
    for key in (LATCH_ANNOTATION, EVIDENCE_ANNOTATION):
        if key in annotations:
            changes.append(FieldChange(ManagedField.ANNOTATION, annotations[key], None, key=key))
    stamp = now.isoformat()
    changes.append(
        FieldChange(
            ManagedField.ANNOTATION,
            annotations.get(DEESCALATED_ANNOTATION),
            stamp,
            key=DEESCALATED_ANNOTATION,
        )
    )
    return tuple(sorted(changes, key=lambda change: change.sort_key))
