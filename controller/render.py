"""How plans and outcomes look: lines for a person, a stable JSON document for machines.

Owns the printable form of every value (durations as `3600s`, unset bounds as `unset`, secrets redacted)
and the JSON schema of `plan --output json` (`format_version` 1). A change whose old and new values
print the same once redacted still prints, marked as a change to its secret part.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from controller.diff import FieldChange, ManagedField, Value
from controller.model import CloudSqlVolume, GcsVolume
from controller.plan import Plan, PlanStatus, ServicePlan
from controller.reconcile import ApplyResult, PassResult, ServiceOutcome
from controller.show import format_value
from desired import Finding, SecretRef
from desired.redaction import redact_env_value, redact_text

__all__ = ["outcomes_text", "plan_json", "plan_text"]

FORMAT_VERSION = 1
_STATUS_MARK = {
    PlanStatus.IN_SYNC: "=",
    PlanStatus.DRIFTED: "~",
    PlanStatus.MISSING: "?",
    PlanStatus.BLOCKED: "x",
    PlanStatus.FAILED: "!",
    PlanStatus.ERROR: "!",
}
_COLOR = {"~": "\033[33m", "?": "\033[31m", "!": "\033[31m", "x": "\033[31m", "=": "\033[32m"}
_RESET = "\033[0m"


def _change_line(change: FieldChange, width: int) -> str:
    old, new = format_value(change, change.old), format_value(change, change.new)
    note = "  (secret part changed)" if old == new else ""
    return f"    {change.path:<{width}}  {old} → {new}{note}"


def _service_block(service: ServicePlan, color: bool) -> list[str]:
    mark = _STATUS_MARK[service.status]
    head = f"{mark} {service.key.name}  [{service.status}]  {service.key.resource_name}"
    lines = [f"{_COLOR[mark]}{head}{_RESET}" if color else head]
    width = max((len(change.path) for change in service.changes), default=0)
    lines.extend(_change_line(change, width) for change in service.changes)
    if service.changes:
        lines.append(
            "    (a new revision will be created)" if service.creates_revision else "    (no new revision)"
        )
    if service.message:
        lines.append(f"    {service.message}")
    lines.extend(f"    note: {note}" for note in service.notes)
    return lines


def plan_text(plan: Plan, *, color: bool = False) -> str:
    """The plan grouped by service, one line per field, `old → new`."""
    drifted = plan.drifted
    fields = sum(len(service.changes) for service in drifted)
    problems = [s for s in plan.services if s.status.is_problem]
    if problems:
        kinds = ", ".join(sorted({str(s.status) for s in problems}))
        summary = (
            f"Not in sync: {len(problems)} of {len(plan.services)} service(s) cannot be reconciled ({kinds})"
        )
        if drifted:
            summary += f"; {len(drifted)} other(s) drifted ({fields} field(s) to change)"
    elif drifted:
        summary = f"Plan: {len(plan.services)} service(s) declared, {len(drifted)} drifted"
        summary += f" ({fields} field(s) to change)"
    else:
        summary = f"No changes: {len(plan.services)} service(s) declared, all in sync"
    lines = [summary + "."]
    for service in plan.services:
        lines.append("")
        lines.extend(_service_block(service, color))
    return "\n".join(lines)


def _json_value(change: FieldChange, value: Value) -> Any:
    if change.field is ManagedField.ENV:
        if isinstance(value, SecretRef):
            return {"secret": value.secret, "version": value.version}
        return None if value is None else redact_env_value(change.key, str(value))
    if isinstance(value, GcsVolume):
        return {
            "bucket": value.bucket,
            "readOnly": value.read_only,
            "mountOptions": sorted(value.mount_options),
        }
    if isinstance(value, CloudSqlVolume):
        return {"cloudSqlInstances": sorted(value.instances)}
    if isinstance(value, str):
        return redact_text(value)
    return value


def plan_json(
    plan: Plan,
    findings: Sequence[Finding] = (),
    result: PassResult | None = None,
    exit_code: int | None = None,
) -> str:
    """The plan as JSON (`format_version` 1, documented in the README), with the desired file's findings.

    With `result` (after `apply` or a server dry run), each service also carries its outcome; `exit_code`,
    when given, is the command's."""
    outcomes = {outcome.key: outcome for outcome in result.outcomes} if result else {}
    exit_code = plan.exit_code if exit_code is None else exit_code
    document = {
        "format_version": FORMAT_VERSION,
        "exit_code": exit_code,
        "findings": [finding.as_dict() for finding in findings],
        "services": [_service_json(service, outcomes.get(service.key)) for service in plan.services],
    }
    return json.dumps(document, indent=2)


def _service_json(service: ServicePlan, outcome: ServiceOutcome | None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": service.key.name,
        "project": service.key.project,
        "region": service.key.region,
        "resource": service.key.resource_name,
        "status": str(service.status),
        "message": service.message,
        "etag": service.observed.etag if service.observed else None,
        "creates_revision": service.creates_revision,
        "notes": list(service.notes),
        "changes": [
            {
                "path": change.path,
                "field": change.field.name.lower(),
                "old": _json_value(change, change.old),
                "new": _json_value(change, change.new),
            }
            for change in service.changes
        ],
    }
    if outcome is not None:
        document["outcome"] = {
            "result": outcome.result.value,
            "message": outcome.message,
            "etag": outcome.etag_after or None,
            "revision": outcome.revision or None,
        }
    return document


def outcomes_text(result: PassResult) -> str:
    """One line per service: applied, unchanged, skipped or failed, with the etags and revision."""
    lines = []
    for outcome in result.outcomes:
        line = f"{outcome.result.value:>9}  {outcome.key.name}: {outcome.message}"
        if outcome.result is ApplyResult.APPLIED:
            line += f"; etag {outcome.etag_before} → {outcome.etag_after}"
        lines.append(line)
    return "\n".join(lines)
