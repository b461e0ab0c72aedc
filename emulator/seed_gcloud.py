"""A `gcloud run deploy` command line, as the v2 Service JSON of the service it would create.

Owns what each flag of a first deploy sets (image, region and project, timeout, revision- and
service-level instance counts, CPU and memory, CPU throttling and boost, concurrency, port, env vars and
secrets, service account, execution environment, volumes and their mounts, Cloud SQL instances, ingress,
labels, VPC access); the mapping follows gcloud's own (`googlecloudsdk/command_lib/run/flags.py`,
`config_changes.py`, `volumes.py`). `--allow-unauthenticated` sets IAM policy, which the emulator does
not hold: accepted, with no effect on the service. `gcloud alpha|beta run deploy` sets that launch stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emulator.seed_gcloud_args import (
    PRERELEASE_FLAGS,
    CommandLine,
    parse_count,
    parse_dict,
    parse_duration,
    parse_list,
    read_words,
)
from emulator.seed_knative import EGRESS, GENERATIONS, INGRESS, choice
from emulator.seed_reader import Problems

__all__ = ["gcloud_service"]

_TRACKS = {"alpha": "ALPHA", "beta": "BETA"}
_VOLUME_KEYS = {
    "cloud-storage": ({"bucket"}, {"readonly", "mount-options"}),
    "in-memory": (set(), {"size-limit"}),
    "nfs": ({"location"}, {"readonly"}),
}


def gcloud_service(
    words: Sequence[str], path: str, problems: Problems, *, project: str | None, location: str | None
) -> dict[str, Any]:
    """The v2 JSON of the service `gcloud [alpha|beta] run deploy SERVICE --flag...` would create."""
    start = 1 if words[:1] == ["gcloud"] else 0
    track = _TRACKS.get(words[start] if start < len(words) else "")
    start += track is not None
    if list(words[start : start + 2]) != ["run", "deploy"]:
        problems.add(path, f"expected `gcloud run deploy SERVICE ...`, got `{' '.join(words[: start + 2])}`")
        return {}
    line = read_words(words, start + 2, path, problems)
    for flag in sorted(PRERELEASE_FLAGS & line.values.keys()) if track is None else ():
        problems.add(
            line.values[flag][0][0], f"--{flag} is a `gcloud beta run deploy` flag: GA gcloud refuses it"
        )
    project, location = _where(line, project, location)
    name = f"projects/{project}/locations/{location}/services/{line.service}"
    service: dict[str, Any] = {"name": name, "client": "gcloud"}
    if track:
        service["launchStage"] = track
    container = _container(line)
    template: dict[str, Any] = {"containers": [container]}
    _template(line, template)
    _volumes(line, template, container, f"{project}:{location}")
    service["template"] = template
    _service_level(line, service)
    return service


def _where(line: CommandLine, project: str | None, location: str | None) -> tuple[str | None, str | None]:
    """The project and region: from the command line, else the seed's defaults (gcloud's config)."""
    given_project = line.value("project")
    given_region = line.value("region")
    project = given_project[0] if given_project else project
    location = given_region[0] if given_region else location
    for flag, value in (("SERVICE", line.service), ("--project", project), ("--region", location)):
        if value is None:
            line.problems.add(line.path, f"no {flag}: give it on the command line or as a seed default")
    if (platform := line.value("platform")) and platform[0] != "managed":
        line.problems.add(platform[1], f"--platform={platform[0]}: only Cloud Run (managed) is emulated")
    return project, location


def _container(line: CommandLine) -> dict[str, Any]:
    container: dict[str, Any] = {}
    if (image := line.value("image")) is None:
        line.problems.add(line.path, "no --image: a seed cannot build from --source")
    else:
        container["image"] = image[0]
    for flag in ("command", "args"):
        if (given := line.value(flag)) is not None:
            container[flag] = parse_list(given[0])
    limits = {flag: given[0] for flag in ("cpu", "memory") if (given := line.value(flag)) is not None}
    resources: dict[str, Any] = {"limits": limits} if limits else {}
    throttling, boost = line.switch("cpu-throttling"), line.switch("cpu-boost")
    resources["cpuIdle"] = throttling[0] if throttling else True  # throttled unless told otherwise
    if boost:
        resources["startupCpuBoost"] = boost[0]
    container["resources"] = resources
    if (port := line.value("port")) is not None:
        if port[0].isdigit():
            container["ports"] = [{"name": "http1", "containerPort": int(port[0])}]
        else:
            line.problems.add(port[1], f"--port must be a number, got {port[0]!r}")
    env = [*_env(line), *_secrets(line)]
    if env:
        container["env"] = env
    return container


def _env(line: CommandLine) -> list[dict[str, Any]]:
    merged: dict[str, str] = {}
    for flag in ("set-env-vars", "update-env-vars"):
        for where, text in line.values.get(flag, []):
            merged.update(parse_dict(text, where, line.problems))
    return [{"name": name, "value": value} for name, value in merged.items()]


def _secrets(line: CommandLine) -> list[dict[str, Any]]:
    """`ENV=SECRET:VERSION` as env from Secret Manager; a `/path=...` mount is not converted."""
    found = []
    for flag in ("set-secrets", "update-secrets"):
        for where, text in line.values.get(flag, []):
            for name, reference in parse_dict(text, where, line.problems).items():
                if name.startswith("/"):
                    line.problems.add(
                        where, f"--{flag} {name}: secret volumes are not converted; seed v2 JSON"
                    )
                    continue
                secret, _, version = reference.partition(":")
                selector = {"secret": secret, "version": version or "latest"}
                found.append({"name": name, "valueSource": {"secretKeyRef": selector}})
    return found


def _template(line: CommandLine, template: dict[str, Any]) -> None:
    problems = line.problems
    if (timeout := line.value("timeout")) is not None:
        seconds = parse_duration(timeout[0], timeout[1], problems)
        if seconds is not None:
            template["timeout"] = f"{seconds}s"
    scaling = _counts(line, "min-instances", "max-instances")
    if scaling:
        template["scaling"] = scaling
    if (concurrency := line.value("concurrency")) is not None and concurrency[0] != "default":
        if concurrency[0].isdigit() and int(concurrency[0]) > 0:
            template["maxInstanceRequestConcurrency"] = int(concurrency[0])
        else:
            problems.add(
                concurrency[1], f"--concurrency must be a number above 0 or 'default', got {concurrency[0]!r}"
            )
    if (account := line.value("service-account")) is not None:
        template["serviceAccount"] = account[0]
    if (generation := line.value("execution-environment")) is not None:
        template["executionEnvironment"] = choice(generation[0], GENERATIONS, generation[1], problems)
    if (suffix := line.value("revision-suffix")) is not None:
        template["revision"] = f"{line.service}-{suffix[0]}"
    if (affinity := line.switch("session-affinity")) is not None:
        template["sessionAffinity"] = affinity[0]
    connector, egress = line.value("vpc-connector"), line.value("vpc-egress")
    if connector or egress:
        template["vpcAccess"] = {"connector": connector[0]} if connector else {}
        if egress:
            egresses = {**EGRESS, "all": "ALL_TRAFFIC"}
            template["vpcAccess"]["egress"] = choice(egress[0], egresses, egress[1], problems)


def _counts(line: CommandLine, low: str, high: str) -> dict[str, int]:
    counts = {}
    for flag, target in ((low, "minInstanceCount"), (high, "maxInstanceCount")):
        if (given := line.value(flag)) is not None:
            count = parse_count(given[0], given[1], line.problems)
            if count:  # 0 or `default`: gcloud removes the setting, the server's default applies
                counts[target] = count
    return counts


def _volumes(line: CommandLine, template: dict[str, Any], container: dict[str, Any], place: str) -> None:
    found = [
        volume
        for where, text in line.values.get("add-volume", [])
        if (volume := _volume(parse_dict(text, where, line.problems), where, line.problems))
    ]
    instances = _cloudsql(line, place)
    if instances:
        found.append({"name": "cloudsql", "cloudSqlInstance": {"instances": instances}})
    if found:
        template["volumes"] = found
    names = {volume["name"] for volume in found}
    mounts = []
    for where, text in line.values.get("add-volume-mount", []):
        mount = parse_dict(text, where, line.problems)
        if set(mount) != {"volume", "mount-path"}:
            line.problems.add(where, "--add-volume-mount takes exactly volume=NAME,mount-path=PATH")
        elif mount["volume"] not in names:
            line.problems.add(
                where, f"--add-volume-mount names volume {mount['volume']!r}, which no --add-volume adds"
            )
        else:
            mounts.append({"name": mount["volume"], "mountPath": mount["mount-path"]})
    if mounts:
        container["volumeMounts"] = mounts


def _volume(given: dict[str, str], where: str, problems: Problems) -> dict[str, Any] | None:
    kind, name = given.pop("type", None), given.pop("name", None)
    if kind not in _VOLUME_KEYS or name is None:
        problems.add(where, f"--add-volume needs name=NAME and type= one of {', '.join(_VOLUME_KEYS)}")
        return None
    required, optional = _VOLUME_KEYS[kind]
    if missing := required - set(given):
        problems.add(where, f"a {kind} volume needs {', '.join(sorted(missing))}")
        return None
    if unknown := set(given) - required - optional:
        problems.add(where, f"a {kind} volume takes no {', '.join(sorted(unknown))}")
        return None
    read_only = given.get("readonly", "false").lower() == "true"
    if kind == "cloud-storage":
        options = [option for option in given.get("mount-options", "").split(";") if option]
        gcs: dict[str, Any] = {"bucket": given["bucket"], "readOnly": read_only}
        return {"name": name, "gcs": {**gcs, "mountOptions": options} if options else gcs}
    if kind == "nfs":
        server, _, share = given["location"].partition(":/")
        return {"name": name, "nfs": {"server": server, "path": "/" + share, "readOnly": read_only}}
    size = {"sizeLimit": given["size-limit"]} if "size-limit" in given else {}
    return {"name": name, "emptyDir": {"medium": "MEMORY", **size}}


def _cloudsql(line: CommandLine, place: str) -> list[str]:
    """Instances as `project:region:instance`; a bare name is in the service's own project and region."""
    names = [
        name
        for flag in ("add-cloudsql-instances", "set-cloudsql-instances")
        for _, text in line.values.get(flag, [])
        for name in parse_list(text)
    ]
    return [name if name.count(":") == 2 else f"{place}:{name}" for name in names]


def _service_level(line: CommandLine, service: dict[str, Any]) -> None:
    if scaling := _counts(line, "min", "max"):
        service["scaling"] = scaling
    if (ingress := line.value("ingress")) is not None:
        service["ingress"] = choice(ingress[0], INGRESS, ingress[1], line.problems)
    if (description := line.value("description")) is not None:
        service["description"] = description[0]
    labels: dict[str, str] = {}
    for where, text in line.values.get("labels", []):
        labels.update(parse_dict(text, where, line.problems))
    if labels:
        service["labels"] = labels
    line.switch("allow-unauthenticated")  # IAM, not a field of the service: read for its contradictions only
