"""What the soak checks, over what the emulator and the controller said: pure functions of their answers.

Owns the judgement of a run, from evidence rather than from the controller's own opinion:
  - each change the controller stored (the emulator's `/v1/writes`, `via: UpdateService`) is compared
    before and after with everything the controller owns taken out: whatever else differs (an image, a
    foreign env var, a label it does not declare, traffic) is a violation;
  - the escalations are the writes that put the latch on a service that had none;
  - the canaries of invalid desired files must appear in no stored change of the controller's;
  - convergence is a plan of the final desired file against the services as stored, and, as a second
    opinion that shares no code with the controller, the declared values read off the stored JSON;
  - the controller's counters come from its `/metrics`, summed over every process the soak started.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from google.cloud import run_v2
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from soak_fleet import CANARY_TIMEOUT, LATCH, OWNED_ENV, OWNED_LABELS, SQLITE_URL, ServiceState

from controller.cloudrun_shape import live_service
from controller.escalation import escalated_spec, is_latched
from controller.plan import PlanStatus, plan_fleet
from desired import DesiredState

__all__ = [
    "Samples",
    "canaries",
    "escalations",
    "mismatches",
    "unconverged",
    "unowned_changes",
]

# What Cloud Run writes itself, and the writer's identity: not a field anyone owns.
_OUTPUT = (
    "etag",
    "generation",
    "observedGeneration",
    "updateTime",
    "createTime",
    "lastModifier",
    "client",
    "clientVersion",
    "latestCreatedRevision",
    "latestReadyRevision",
    "terminalCondition",
    "conditions",
    "trafficStatuses",
    "reconciling",
    "uri",
    "urls",
)
_OWN_PREFIX = "cloudrun-reconciler.dev/"
_CLOUD_SQL_VOLUME = "cloudsql"


def unowned_view(service: dict[str, Any]) -> dict[str, Any]:
    """The service (v2 JSON) with every field the controller owns in the soak's files taken out: the
    timeout, service-level scaling, CPU allocation, the declared env vars and labels, its own annotations,
    the Cloud SQL volume and mount an escalation adds; env vars become a map (their order means nothing)."""
    view = copy.deepcopy(service)
    for name in (*_OUTPUT, "scaling"):
        view.pop(name, None)
    view["labels"] = {k: v for k, v in view.get("labels", {}).items() if k not in OWNED_LABELS}
    view["annotations"] = {
        k: v for k, v in view.get("annotations", {}).items() if not k.startswith(_OWN_PREFIX)
    }
    template = view.setdefault("template", {})
    template.pop("timeout", None)
    template.pop("revision", None)
    template["volumes"] = [v for v in template.get("volumes", []) if v.get("name") != _CLOUD_SQL_VOLUME]
    for container in template.get("containers", []):
        container["env"] = {
            e["name"]: {k: v for k, v in e.items() if k != "name"}
            for e in container.get("env", [])
            if e["name"] not in OWNED_ENV
        }
        container.get("resources", {}).pop("cpuIdle", None)
        container["volumeMounts"] = [
            m for m in container.get("volumeMounts", []) if m.get("name") != _CLOUD_SQL_VOLUME
        ]
    return view


def _differences(before: Any, after: Any, path: str = "") -> Iterator[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after)):
            yield from _differences(before.get(key), after.get(key), f"{path}.{key}" if path else key)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            yield from _differences(old, new, f"{path}[{index}]")
    elif before != after:
        yield f"{path}: {_short(before)} → {_short(after)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def controller_writes(writes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [write for write in writes if write["via"] == "UpdateService"]


def unowned_changes(writes: Iterable[dict[str, Any]]) -> list[str]:
    """Every change the controller stored to a field it does not own, one line each."""
    found = []
    for write in controller_writes(writes):
        short = write["name"].rsplit("/", 1)[-1]
        for difference in _differences(unowned_view(write["before"]), unowned_view(write["after"])):
            found.append(f"{short}: write #{write['index']} changed {difference}")
    return found


def escalations(writes: Iterable[dict[str, Any]]) -> Counter[str]:
    """Per service, how many of the controller's writes put the latch on where there was none."""
    found: Counter[str] = Counter()
    for write in controller_writes(writes):
        had = write["before"].get("annotations", {}).get(LATCH)
        has = write["after"].get("annotations", {}).get(LATCH)
        if has and not had:
            found[write["name"].rsplit("/", 1)[-1]] += 1
    return found


def canaries(writes: Iterable[dict[str, Any]]) -> list[str]:
    """Stored changes of the controller's that carry a value only an invalid desired file holds."""
    found = []
    for write in controller_writes(writes):
        after = write["after"]
        short = write["name"].rsplit("/", 1)[-1]
        template = after.get("template", {})
        if template.get("timeout") == CANARY_TIMEOUT:
            found.append(f"{short}: write #{write['index']} set the timeout {CANARY_TIMEOUT}")
        if "canary" in after.get("labels", {}):
            found.append(f"{short}: write #{write['index']} set the label canary")
        for container in template.get("containers", []):
            for variable in container.get("env", []):
                if "canary=" in variable.get("value", ""):
                    found.append(
                        f"{short}: write #{write['index']} set {variable['name']} from a blocked file"
                    )
    return found


def unconverged(
    desired: DesiredState, services: Iterable[dict[str, Any]], held: dict[str, set[str]]
) -> dict[str, list[str]]:
    """Per service not in sync with `desired` as stored (a latched one judged against its escalated spec),
    the drifted fields, leaving out those the flap guard holds (`held`: service → paths), which the
    controller leaves alone by design and reports as a Conflict."""
    live = {}
    for document in services:
        pb = run_v2.Service.pb()()
        json_format.ParseDict(document, pb)
        service = live_service(run_v2.Service.wrap(pb))
        live[service.observed.key] = service.observed
    specs = [
        escalated_spec(spec) if spec.escalation and is_latched(live.get(spec.key)) else spec
        for spec in desired.services
    ]
    plan = plan_fleet(desired.model_copy(update={"services": specs}), live, {}, None)
    found = {}
    for service_plan in plan.services:
        if service_plan.status is PlanStatus.IN_SYNC:
            continue
        fields = [
            c.path for c in service_plan.changes if c.path not in held.get(service_plan.key.name, set())
        ]
        if fields or service_plan.status is not PlanStatus.DRIFTED:
            found[service_plan.key.name] = fields or [f"{service_plan.status.value}: {service_plan.message}"]
    return found


def mismatches(state: ServiceState, live: dict[str, Any]) -> list[str]:
    """What of the service as stored (v2 JSON) differs from what the soak last declared of it, read
    directly: the timeout, the scaling, CPU allocation, the label, the owned env vars; on Cloud SQL once
    latched."""
    latched = live.get("annotations", {}).get(LATCH) == "cloudsql"
    template = live.get("template", {})
    container = (template.get("containers") or [{}])[0]
    env = {e["name"]: e for e in container.get("env", [])}
    scaling = live.get("scaling", {})
    callback = f"https://agent:{state.callback_password}@hooks.example.com/done"
    database: dict[str, Any] = {
        "name": "DATABASE_URL",
        "value": SQLITE_URL + "?_journal_mode=WAL&_busy_timeout=5000",
    }
    if latched and state.cloud_sql_password:
        instance = f"{state.resource.split('/')[1]}:{state.resource.split('/')[3]}:{state.name}-sql"
        url = f"postgresql://app:{state.cloud_sql_password}@/app?host=/cloudsql/{instance}"
        database = {"name": "DATABASE_URL", "value": url}
    elif latched:
        secret = {"secret": f"{state.name}-cloudsql-url", "version": "latest"}
        database = {"name": "DATABASE_URL", "valueSource": {"secretKeyRef": secret}}
    wanted = {
        "timeout": (template.get("timeout"), state.timeout),
        "scaling.minInstanceCount": (scaling.get("minInstanceCount"), 1),
        "scaling.maxInstanceCount": (scaling.get("maxInstanceCount"), state.max_instances),
        "cpuIdle": (container.get("resources", {}).get("cpuIdle", False), False),  # JSON leaves out false
        "labels.tier": (live.get("labels", {}).get("tier"), state.tier),
        "env.API_TOKEN": (env.get("API_TOKEN", {}).get("value"), state.token),
        "env.CALLBACK_URL": (env.get("CALLBACK_URL", {}).get("value"), callback),
        "env.DATABASE_URL": (env.get("DATABASE_URL"), database),
    }
    return [field for field, (found, declared) in wanted.items() if found != declared]


class Samples:
    """The counters of one controller process, from its last `/metrics` scrape."""

    def __init__(self, text: str = "") -> None:
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample of `name` whose labels include `labels`."""
        return sum(
            value
            for (sample, found), value in self.values.items()
            if sample == name and set(labels.items()) <= set(found)
        )

    def by(self, name: str, label: str) -> Counter[str]:
        found: Counter[str] = Counter()
        for (sample, labels), value in self.values.items():
            if sample == name:
                found[dict(labels).get(label, "")] += int(value)
        return found
