"""A Cloud Run service in the v1 Knative shape, as the v2 Service JSON the emulator stores.

Owns the service-level part of the v1 → v2 mapping: the name (`metadata.name`, the project from
`metadata.namespace`, the region from the `cloud.googleapis.com/location` label, each falling back to a
default the caller gives), the annotations that stand for v2 fields (ingress, launch stage, scaling,
CPU allocation, execution environment, container dependencies, Cloud SQL, VPC access), the traffic split
with its tags, and the output fields `gcloud run services describe` prints (kept where v2 has them,
dropped where the emulator computes its own). An annotation in a reserved namespace that the mapping does
not know is a problem, never passed through: v2 would refuse it. Annotation names follow gcloud's own
constants (`googlecloudsdk/api_lib/run/{service,revision,container_resource,k8s_object}.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from emulator.seed_knative_containers import containers, secret_aliases, volumes
from emulator.seed_reader import Node, Problems, at

__all__ = ["EGRESS", "GENERATIONS", "INGRESS", "KNATIVE_API_VERSION", "choice", "knative_service", "reserved"]

KNATIVE_API_VERSION = "serving.knative.dev/v1"
LOCATION_LABEL = "cloud.googleapis.com/location"
_RESERVED = ("run.googleapis.com", "cloud.googleapis.com", "serving.knative.dev", "autoscaling.knative.dev")
INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
    "none": "INGRESS_TRAFFIC_NONE",
}
_LAUNCH_STAGES = {
    stage: stage for stage in ("ALPHA", "BETA", "GA", "DEPRECATED", "EARLY_ACCESS", "PRELAUNCH")
}
GENERATIONS = {"gen1": "EXECUTION_ENVIRONMENT_GEN1", "gen2": "EXECUTION_ENVIRONMENT_GEN2"}
EGRESS = {"all-traffic": "ALL_TRAFFIC", "private-ranges-only": "PRIVATE_RANGES_ONLY"}
# Written by the server or by gcloud for itself; the emulator keeps its own record of these.
_SERVICE_OUTPUT = {"run.googleapis.com/ingress-status", "run.googleapis.com/operation-id"}
_TEMPLATE_OUTPUT = {"run.googleapis.com/client-name", "run.googleapis.com/client-version"}
_TEMPLATE_OUTPUT_LABELS = {"run.googleapis.com/startupProbeType"}  # the server's marker of a default probe
_REVISION_UNDER = "it belongs under spec.template.metadata.annotations"
_SERVICE_UNDER = "it belongs under metadata.annotations"
# The other level's annotations, refused where they are with where they belong (the YAML reference puts the
# service-wide instance counts on the Service, a revision's on its template).
_ON_SERVICE = {
    **{
        f"run.googleapis.com/{key}": f"a revision's annotation: {_REVISION_UNDER}"
        for key in (
            "execution-environment",
            "cpu-throttling",
            "startup-cpu-boost",
            "container-dependencies",
            "cloudsql-instances",
            "vpc-access-connector",
            "vpc-access-egress",
            "sessionAffinity",
        )
    },
    **{
        f"autoscaling.knative.dev/{key}": f"a revision's annotation: {_REVISION_UNDER}; "
        f"the service-wide count is run.googleapis.com/{key}"
        for key in ("minScale", "maxScale")
    },
}
_ON_REVISION = {
    **{
        f"run.googleapis.com/{key}": f"a service's annotation: {_SERVICE_UNDER}"
        for key in ("ingress", "launch-stage", "description")
    },
    **{
        f"run.googleapis.com/{key}": f"a service's annotation: {_SERVICE_UNDER}; "
        f"a revision's count is autoscaling.knative.dev/{key}"
        for key in ("minScale", "maxScale")
    },
}
_Take = Callable[[str], tuple[str | None, str]]  # an annotation's value (taken out) and its path


def reserved(key: str) -> bool:
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return any(prefix == namespace or prefix.endswith("." + namespace) for namespace in _RESERVED)


def knative_service(document: Node, *, project: str | None, location: str | None) -> dict[str, Any]:
    """The v2 JSON of one `serving.knative.dev/v1` Service; problems go to `document.problems`."""
    api_version, kind = document.text("apiVersion"), document.text("kind")
    if (api_version, kind) != (KNATIVE_API_VERSION, "Service"):
        document.problem(
            "kind",
            f"expected a {KNATIVE_API_VERSION} Service (a Cloud Run service), got {api_version} {kind}",
        )
    document.drop("@type")  # the protobuf type URL `gcloud ... --format=json` prints first
    service: dict[str, Any] = {}
    metadata = document.child("metadata")
    if metadata is None:
        document.problem("metadata", "required: the service's name")
    else:
        _metadata(metadata, service, project, location)
    spec = document.child("spec")
    template = None if spec is None else spec.child("template")
    if spec is None or template is None:
        document.problem(("spec", "template"), "required: the revision template")
    else:
        service["template"] = _template(template)
        if traffic := [_traffic(target) for target in spec.children("traffic")]:
            service["traffic"] = traffic
        spec.finish()
    if (status := document.child("status")) is not None:
        _status(status, service)
    document.finish()
    return service


def _metadata(node: Node, service: dict[str, Any], project: str | None, location: str | None) -> None:
    name = node.text("name")
    project = node.text("namespace") or project
    labels = node.text_map("labels")
    location = labels.pop(LOCATION_LABEL, None) or location
    missing: tuple[str, ...]
    for missing, value, reason in (
        (("name",), name, "required"),
        (("namespace",), project, "no project: give metadata.namespace or a default project"),
        (("labels", LOCATION_LABEL), location, "no region: give this label or a default region"),
    ):
        if value is None:
            node.problem(missing, reason)
    service["name"] = f"projects/{project}/locations/{location}/services/{name}"
    if (generation := node.number("generation")) is not None:
        service["generation"] = str(generation)
    for key, target in (("uid", "uid"), ("creationTimestamp", "createTime")):
        if (value := node.text(key)) is not None:
            service[target] = value
    node.drop("resourceVersion", "selfLink")  # v1's etag and URL; the emulator computes its own
    if user := _user_keys(node.at("labels"), labels, node.problems, "label"):
        service["labels"] = user
    _service_annotations(node.at("annotations"), node.text_map("annotations"), service, node.problems)
    node.finish()


def _service_annotations(
    path: str, annotations: dict[str, str], service: dict[str, Any], p: Problems
) -> None:
    simple = {
        "run.googleapis.com/description": "description",
        "run.googleapis.com/client-name": "client",
        "run.googleapis.com/client-version": "clientVersion",
        "serving.knative.dev/creator": "creator",
        "serving.knative.dev/lastModifier": "lastModifier",
    }
    for key in [key for key in annotations if key in simple]:
        service[simple[key]] = annotations.pop(key)
    if (ingress := annotations.pop("run.googleapis.com/ingress", None)) is not None:
        service["ingress"] = choice(ingress, INGRESS, at(path, "run.googleapis.com/ingress"), p)
    if (stage := annotations.pop("run.googleapis.com/launch-stage", None)) is not None:
        service["launchStage"] = choice(stage, _LAUNCH_STAGES, at(path, "run.googleapis.com/launch-stage"), p)
    scaling = {
        target: _count(annotations.pop(key), at(path, key), p)
        for key, target in (
            ("run.googleapis.com/minScale", "minInstanceCount"),
            ("run.googleapis.com/maxScale", "maxInstanceCount"),
        )
        if key in annotations
    }
    if scaling:
        service["scaling"] = scaling
    if (urls := annotations.pop("run.googleapis.com/urls", None)) is not None:
        service["urls"] = _json_strings(urls, at(path, "run.googleapis.com/urls"), p)
    for key in _SERVICE_OUTPUT:
        annotations.pop(key, None)
    if user := _user_keys(path, annotations, p, "annotation", _ON_SERVICE):
        service["annotations"] = user


def _template(node: Node) -> dict[str, Any]:
    template: dict[str, Any] = {}
    metadata = node.child("metadata")
    annotations: dict[str, str] = {}
    if metadata is not None:
        if (revision := metadata.text("name")) is not None:
            template["revision"] = revision
        labels = metadata.text_map("labels")
        for key in _TEMPLATE_OUTPUT_LABELS:
            labels.pop(key, None)
        if user := _user_keys(metadata.at("labels"), labels, node.problems, "label"):
            template["labels"] = user
        annotations = metadata.text_map("annotations")
        metadata.finish()
    spec = node.child("spec")
    if spec is None:
        node.problem("spec", "required: the containers")
        node.finish()
        return template
    template["containers"] = containers(spec)
    if found := volumes(spec):
        template["volumes"] = found
    if (concurrency := spec.number("containerConcurrency")) is not None:
        template["maxInstanceRequestConcurrency"] = concurrency
    if (timeout := spec.number("timeoutSeconds")) is not None:
        template["timeout"] = f"{timeout}s"
    if (account := spec.text("serviceAccountName")) is not None:
        template["serviceAccount"] = account
    if spec.has("env"):
        _misplaced_env(spec)
    spec.finish()
    path = metadata.at("annotations") if metadata is not None else node.at("metadata.annotations")
    _template_annotations(path, annotations, template, node.problems)
    node.finish()
    return template


def _misplaced_env(spec: Node) -> None:
    """`env` at the revision level belongs to no container: say so, and check its entries all the same."""
    spec.problem("env", "unknown field: env belongs to a container (spec.template.spec.containers[].env)")
    holder = Node({"env": spec.raw("env")}, spec.path, spec.problems)
    for entry in holder.children("env"):
        source = entry.child("valueFrom")
        if source is not None and not source.has("secretKeyRef"):
            for key in source.value:
                source.problem(
                    str(key),
                    "unsupported source: Cloud Run takes a plain `value` or `valueFrom.secretKeyRef`",
                )


def _template_annotations(
    path: str, annotations: dict[str, str], template: dict[str, Any], p: Problems
) -> None:
    def take(key: str) -> tuple[str | None, str]:
        return annotations.pop(key, None), at(path, key)

    scaling = {}
    for key, target in (("minScale", "minInstanceCount"), ("maxScale", "maxInstanceCount")):
        value, where = take(f"autoscaling.knative.dev/{key}")
        if value is not None:
            scaling[target] = _count(value, where, p)
    if scaling:
        template["scaling"] = scaling
    value, where = take("run.googleapis.com/execution-environment")
    if value is not None:
        template["executionEnvironment"] = choice(value, GENERATIONS, where, p)
    resources: dict[str, bool] = {}
    # Throttled CPU between requests is v2's `cpu_idle`; both apply to every container of the revision.
    for key, target in (("cpu-throttling", "cpuIdle"), ("startup-cpu-boost", "startupCpuBoost")):
        value, where = take(f"run.googleapis.com/{key}")
        if value is not None and (flag := _boolean(value, where, p)) is not None:
            resources[target] = flag
    # v1 throttles CPU unless told otherwise; v2 wants cpu_idle given whenever resources are.
    resources.setdefault("cpuIdle", True)
    for container in template["containers"]:
        container.setdefault("resources", {}).update(resources)
    value, where = take("run.googleapis.com/container-dependencies")
    if value is not None:
        _dependencies(value, where, template["containers"], p)
    value, where = take("run.googleapis.com/cloudsql-instances")
    if value is not None:
        instances = [name.strip() for name in value.split(",") if name.strip()]
        template.setdefault("volumes", []).append(
            {"name": "cloudsql", "cloudSqlInstance": {"instances": instances}}
        )
    value, where = take("run.googleapis.com/secrets")
    if value is not None:
        secret_aliases(value, where, template, p)
    _vpc_and_affinity(take, template, p)
    for key in _TEMPLATE_OUTPUT:
        annotations.pop(key, None)
    if user := _user_keys(path, annotations, p, "annotation", _ON_REVISION):
        template["annotations"] = user


def _vpc_and_affinity(take: _Take, template: dict[str, Any], p: Problems) -> None:
    connector, _ = take("run.googleapis.com/vpc-access-connector")
    egress, where = take("run.googleapis.com/vpc-access-egress")
    if connector is not None or egress is not None:
        template["vpcAccess"] = {"connector": connector} if connector else {}
        if egress is not None:
            template["vpcAccess"]["egress"] = choice(egress, EGRESS, where, p)
    affinity, where = take("run.googleapis.com/sessionAffinity")
    if affinity is not None:
        template["sessionAffinity"] = _boolean(affinity, where, p)


def _dependencies(text: str, where: str, found: list[dict[str, Any]], p: Problems) -> None:
    """`{"sidecar": ["app"]}`, a JSON object in a string: each container's `dependsOn` in v2."""
    try:
        dependencies = json.loads(text)
    except json.JSONDecodeError as error:
        p.add(where, f"not JSON: {error}")
        return
    if not isinstance(dependencies, dict) or not all(
        isinstance(v, list) and all(isinstance(n, str) for n in v) for v in dependencies.values()
    ):
        p.add(where, 'expected a JSON object of container name to a list of names, such as {"b": ["a"]}')
        return
    by_name = {container.get("name"): container for container in found}
    for name, needs in dependencies.items():
        for missing in [n for n in (name, *needs) if n not in by_name]:
            p.add(where, f"names container {missing!r}, which the template does not have")
        if name in by_name:
            by_name[name]["dependsOn"] = list(needs)


def _traffic(node: Node) -> dict[str, Any]:
    target: dict[str, Any] = {}
    latest, revision = node.flag("latestRevision"), node.text("revisionName")
    if latest and revision:
        node.problem("revisionName", "a target is either the latest revision or a named one, not both")
    if latest:
        target["type"] = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    elif revision:
        target.update(type="TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", revision=revision)
    else:
        node.problem("revisionName", "required unless latestRevision is true")
    if (percent := node.number("percent")) is not None:
        target["percent"] = percent
    if (tag := node.text("tag")) is not None:
        target["tag"] = tag
    node.drop("url")  # the tag's URL, output only
    node.finish()
    return target


def _status(node: Node, service: dict[str, Any]) -> None:
    """Output only: the URL is kept; revisions, conditions and traffic are the emulator's own."""
    if (url := node.text("url")) is not None:
        service["uri"] = url
    node.drop(
        "observedGeneration",
        "latestCreatedRevisionName",
        "latestReadyRevisionName",
        "conditions",
        "traffic",
        "address",
    )
    node.finish()


def _user_keys(
    path: str, found: dict[str, str], p: Problems, what: str, elsewhere: dict[str, str] | None = None
) -> dict[str, str]:
    """Labels or annotations a user may set; a reserved key the mapping does not know is a problem, and
    one that belongs at the other level (`elsewhere`) says so."""
    for key in [key for key in found if reserved(key)]:
        p.add(
            at(path, key),
            (elsewhere or {}).get(
                key, f"{what} in a reserved namespace that has no v2 field the emulator knows"
            ),
        )
        del found[key]
    return found


def choice(value: str, table: dict[str, str], where: str, p: Problems) -> str | None:
    if value in table:
        return table[value]
    p.add(where, f"expected one of {', '.join(table)}, got {value!r}")
    return None


def _count(value: str, where: str, p: Problems) -> int | None:
    if value.strip().isdigit():
        return int(value)
    p.add(where, f"expected a whole number of instances, got {value!r}")
    return None


def _boolean(value: str, where: str, p: Problems) -> bool | None:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    p.add(where, f"expected true or false, got {value!r}")
    return None


def _json_strings(text: str, where: str, p: Problems) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        p.add(where, f"not a JSON list of URLs: {error}")
        return []
    if isinstance(value, list) and all(isinstance(entry, str) for entry in value):
        return value
    p.add(where, "expected a JSON list of URLs")
    return []
