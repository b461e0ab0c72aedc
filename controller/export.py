"""`export`: a desired-state document written from live services, to start managing them. Pure.

Owns the mapping back from `ObservedService` to the schema: only the knobs the controller manages, each
as the API reports it (so exporting and then planning shows no drift), and a comment above every line
where a policy check fires. Plain env values that look like secrets are left out, with a comment, since
the document is meant for git.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import yaml

from controller.diff import TargetError, select_container
from controller.model import (
    APPLIED_ANNOTATION,
    DEFAULT_REVISION_MAX_INSTANCES,
    GcsVolume,
    ObservedContainer,
    ObservedService,
)
from desired import API_VERSION, DesiredStateError, Finding, SecretRef, ServiceSpec, check_desired_text
from desired.policy import is_reserved_key
from desired.redaction import MASK, redact_env_value, redact_text
from desired.sqlite_url import is_sqlite_url

__all__ = ["export_document"]

_RESERVED = (
    "run.googleapis.com/",
    "cloud.googleapis.com/",
    "serving.knative.dev/",
    "autoscaling.knative.dev/",
)


def export_document(services: Sequence[ObservedService]) -> str:
    """The YAML text of a desired-state document declaring `services` as they are."""
    notes: dict[int, list[str]] = {}  # per service: what a person should read before committing the file
    entries = [_service(index, service, notes) for index, service in enumerate(services)]
    projects = {service.key.project for service in services}
    regions = {service.key.region for service in services}
    document: dict[str, Any] = {"apiVersion": API_VERSION}
    if len(projects) == 1 and len(regions) == 1:
        document["defaults"] = {"project": projects.pop(), "region": regions.pop()}
        for entry in entries:
            del entry["project"], entry["region"]
    document["services"] = entries
    text = yaml.safe_dump(document, sort_keys=False, width=110, allow_unicode=True)
    header = (
        "# yaml-language-server: $schema=./desired-state.schema.json\n"
        "# Exported from the live services: every knob below is managed from now on; delete what you do not\n"
        "# want managed. Comments mark what `cloudrun-reconciler validate` reports.\n"
    )
    return header + _annotated(text, notes)


def _service(index: int, service: ObservedService, notes: dict[int, list[str]]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": service.key.name,
        "project": service.key.project,
        "region": service.key.region,
    }
    if float(service.timeout_seconds).is_integer() and service.timeout_seconds >= 1:
        entry["timeout"] = f"{int(service.timeout_seconds)}s"
    else:  # the file speaks whole seconds; leaving it out keeps it unmanaged rather than changing it
        notes.setdefault(index, []).append(
            f"timeout {service.timeout_seconds:g}s is not whole seconds: not exported"
        )
    entry["scaling"] = _scaling(service)
    try:
        container = select_container(ServiceSpec(name=service.key.name), service.containers)
    except TargetError as error:  # several containers, none serving ingress: nothing to guess from
        notes.setdefault(index, []).append(f"container knobs not exported: {error}")
        return entry
    if len(service.containers) > 1:
        entry["container"] = container.label
    entry["cpuAlwaysAllocated"] = not container.cpu_idle
    entry["startupCpuBoost"] = container.startup_cpu_boost
    if service.execution_environment:
        entry["executionEnvironment"] = service.execution_environment
    env, database = _env(container, notes.setdefault(index, []))
    if env:
        entry["env"] = env
    volume = _volume(service, container)
    if volume:
        entry["volume"] = volume
    for section, pairs in (("labels", service.labels), ("annotations", service.annotations)):
        pairs = tuple((k, v) for k, v in pairs if k != APPLIED_ANNOTATION)  # the controller's own record
        kept = {k: v for k, v in pairs if not is_reserved_key(k) and redact_text(v) == v}
        notes.setdefault(index, []).extend(
            f"{section[:-1]} {k}: its value holds a credential and is not exported"
            for k, v in pairs
            if not is_reserved_key(k) and redact_text(v) != v
        )
        if kept:
            entry[section] = kept
    if database:
        entry["database"] = database
    return entry


def _scaling(service: ObservedService) -> dict[str, Any]:
    """The level that binds: service level when it caps instances, or sets a minimum under an uncapped
    revision; otherwise the revision level, whose maximum Cloud Run always reports."""
    revision_capped = service.revision_max_instances != DEFAULT_REVISION_MAX_INSTANCES
    if service.service_max_instances or (service.service_min_instances and not revision_capped):
        scaling: dict[str, Any] = {"level": "service", "minInstances": service.service_min_instances}
        if service.service_max_instances:
            scaling["maxInstances"] = service.service_max_instances
        return scaling
    return {
        "level": "revision",
        "minInstances": service.revision_min_instances,
        "maxInstances": service.revision_max_instances,
    }


def _env(container: ObservedContainer, notes: list[str]) -> tuple[dict[str, Any], dict[str, str] | None]:
    env: dict[str, Any] = {}
    database = None
    for name, value in container.env:
        if isinstance(value, SecretRef):
            env[name] = {"secret": value.secret, "version": value.version}
        elif redact_env_value(name, value) == MASK or redact_text(value) != value:
            notes.append(
                f"{name}: a plain value that looks like a secret is not exported; use Secret Manager"
            )
        else:
            env[name] = value
            if database is None and is_sqlite_url(value):
                database = {"env": name, "dialect": _dialect(value)}
                guess = database["dialect"]
                notes.append(f"database.dialect {guess} is guessed from how {name} is spelled: confirm it")
    return env, database


def _dialect(url: str) -> str:
    """A guess from the spelling; the comment on `database` asks a person to confirm it."""
    if "_pragma=" in url:
        return "modernc"
    if url.startswith("sqlite:////") or "+pysqlite" in url:
        return "python"
    return "mattn"


def _volume(service: ObservedService, container: ObservedContainer) -> dict[str, Any] | None:
    for name, path in container.volume_mounts:
        volume = service.volume(name)
        if isinstance(volume, GcsVolume):
            exported: dict[str, Any] = {"name": name, "bucket": volume.bucket, "mountPath": path}
            if volume.mount_options:
                exported["mountOptions"] = sorted(volume.mount_options)
            if volume.read_only:
                exported["readOnly"] = True
            return exported
    return None


def _annotated(text: str, service_notes: dict[int, list[str]]) -> str:
    """`text` with each finding as a comment above the line it points at."""
    try:
        findings: Sequence[Finding] = check_desired_text(text, "export").findings
    except DesiredStateError as error:  # a live value the file cannot express: say so, keep the rest
        findings = error.findings
    lines = text.splitlines()
    notes: dict[int, list[str]] = {}
    for finding in findings:
        note = f"{finding.code} ({finding.severity}): {finding.message}" + (
            f"; fix: {finding.fix}" if finding.fix else ""
        )
        notes.setdefault(finding.line - 1, []).extend(textwrap.wrap(note, 100, subsequent_indent="  "))
    for index, reasons in service_notes.items():
        anchor = _service_line(lines, index)
        for reason in reasons:
            notes.setdefault(anchor, []).extend(textwrap.wrap(reason, 100, subsequent_indent="  "))
    out: list[str] = []
    for number, line in enumerate(lines):
        indent = line[: len(line) - len(line.lstrip(" -"))].replace("-", " ")
        out.extend(f"{indent}# {note}" for note in notes.get(number, []))
        out.append(line)
    return "\n".join(out) + "\n"


def _service_line(lines: list[str], index: int) -> int:
    starts = [number for number, line in enumerate(lines) if line.startswith("- name: ")]
    return starts[index] if index < len(starts) else 0
