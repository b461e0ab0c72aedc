"""A `gcloud run deploy` command line, as the v2 Service JSON of the service it would create.

Owns what each flag of a first deploy sets (image, region and project, timeout, revision- and
service-level instance counts, CPU and memory, CPU throttling and boost, concurrency, port, env vars and
secrets, service account, execution environment, volumes and their mounts, Cloud SQL instances, ingress,
labels, VPC access); the mapping follows gcloud's own (`googlecloudsdk/command_lib/run/flags.py`,
`config_changes.py`, `volumes.py`, `secrets_mapping.py`, `surface/run/deploy.py`), down to what gcloud
refuses by release track. `--allow-unauthenticated` sets IAM policy, which the emulator does not hold:
accepted, with no effect on the service. `gcloud alpha|beta run deploy` sets that launch stage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from emulator.seed_gcloud_args import (
    CommandLine,
    parse_count,
    parse_dict,
    parse_duration,
    parse_list,
    read_words,
)
from emulator.seed_gcloud_flags import PRERELEASE_FLAGS
from emulator.seed_knative import EGRESS, GENERATIONS, INGRESS, choice
from emulator.seed_reader import Problems

__all__ = ["gcloud_service"]

_TRACKS = {"alpha": "ALPHA", "beta": "BETA"}
_VOLUME_KEYS = {
    "cloud-storage": ({"bucket"}, {"readonly"}),
    "in-memory": (set(), {"size-limit"}),
    "nfs": ({"location"}, {"readonly"}),
}
_PRERELEASE_VOLUME_KEYS = {"cloud-storage": {"mount-options"}}  # gcloud's volumes.py, by release track
_INGRESS = {name: value for name, value in INGRESS.items() if name != "none"}  # gcloud's choices
_EGRESS = {**EGRESS, "all": "ALL_TRAFFIC"}  # `all`: gcloud's deprecated spelling of all-traffic
# gcloud's `ReachableSecret`: a secret of this project by name, or of another by project number.
_WORD = re.compile(r"[^:]*\[(\d+)\]: ")  # a problem's path that ends at a word of the command line
_SECRET_NAME = re.compile(r"[a-zA-Z0-9_-]{1,255}")
_REMOTE_SECRET = re.compile(
    r"projects/(?P<project>[0-9]{1,19})/secrets/(?P<secret>[a-zA-Z0-9_-]{1,255})"
    r"(?::(?P<short>.+)|/versions/(?P<long>.+))?"
)


def gcloud_service(
    words: Sequence[str], path: str, problems: Problems, *, project: str | None, location: str | None
) -> dict[str, Any]:
    """The v2 JSON of the service `gcloud [alpha|beta] run deploy SERVICE --flag...` would create; its
    problems go to `problems` in the order of the words they are about."""
    mine = Problems()
    service = _service(words, path, mine, project, location)
    problems.found.extend(sorted(mine.found, key=_word_index))
    return service


def _word_index(problem: str) -> int:
    """Where in the command line a problem is: the index of its word, -1 for the whole line."""
    place = _WORD.match(problem)
    return int(place.group(1)) if place else -1


def _service(
    words: Sequence[str], path: str, problems: Problems, project: str | None, location: str | None
) -> dict[str, Any]:
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
    _volumes(line, template, container, f"{project}:{location}", prerelease=track is not None)
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
        if found := line.items(flag):
            container[flag] = found
    limits = {flag: given[0] for flag in ("cpu", "memory") if (given := line.value(flag)) is not None}
    resources: dict[str, Any] = {"limits": limits} if limits else {}
    throttling, boost = line.switch("cpu-throttling"), line.switch("cpu-boost")
    resources["cpuIdle"] = throttling[0] if throttling else True  # throttled unless told otherwise
    # gcloud turns startup CPU boost on for a new service unless told otherwise (surface/run/deploy.py).
    resources["startupCpuBoost"] = boost[0] if boost else True
    container["resources"] = resources
    if (port := line.value("port")) is not None and port[0] != "default":
        if port[0].isdigit() and 1 <= int(port[0]) <= 65535:
            container["ports"] = [{"name": "http1", "containerPort": int(port[0])}]
        else:
            line.problems.add(
                port[1], f"--port must be a number from 1 to 65535 or 'default', got {port[0]!r}"
            )
    env = [*_env(line), *_secrets(line)]
    if env:
        container["env"] = env
    return container


def _env(line: CommandLine) -> list[dict[str, Any]]:
    """Env vars of --set-env-vars or --update-env-vars (gcloud takes one of the two)."""
    merged = {**line.pairs("set-env-vars"), **line.pairs("update-env-vars")}
    return [{"name": name, "value": value} for name, (value, _) in merged.items()]


def _secrets(line: CommandLine) -> list[dict[str, Any]]:
    """`ENV=SECRET:VERSION` as env from Secret Manager; a `/path=...` mount is not converted."""
    found = []
    for flag in ("set-secrets", "update-secrets"):
        for name, (reference, where) in line.pairs(flag).items():
            if name.startswith("/"):
                line.problems.add(where, f"--{flag} {name}: secret volumes are not converted; seed v2 JSON")
            elif (selector := _secret(name, reference, where, line.problems)) is not None:
                found.append({"name": name, "valueSource": {"secretKeyRef": selector}})
    return found


def _secret(name: str, reference: str, where: str, problems: Problems) -> dict[str, str] | None:
    """`SECRET:VERSION`, or `projects/NUMBER/secrets/SECRET[:VERSION|/versions/VERSION]` (latest if
    none), as v2's secret and version; a secret of this project needs its version (as gcloud says)."""
    if remote := _REMOTE_SECRET.fullmatch(reference):
        version = remote["short"] or remote["long"] or "latest"
        return {"secret": f"projects/{remote['project']}/secrets/{remote['secret']}", "version": version}
    secret, _, version = reference.partition(":")
    if not _SECRET_NAME.fullmatch(secret) or ":" in version:
        problems.add(where, f"{name}={reference}: expected SECRET:VERSION or projects/NUMBER/secrets/SECRET")
    elif not version:
        problems.add(where, f"{name}={reference}: no secret version; use {reference}:latest for the latest")
    else:
        return {"secret": secret, "version": version}
    return None


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
            template["vpcAccess"]["egress"] = choice(egress[0], _EGRESS, egress[1], problems)


def _counts(line: CommandLine, low: str, high: str) -> dict[str, int]:
    counts = {}
    for flag, target in ((low, "minInstanceCount"), (high, "maxInstanceCount")):
        if (given := line.value(flag)) is not None:
            count = parse_count(given[0], given[1], line.problems)
            if count:  # 0 or `default`: gcloud removes the setting, the server's default applies
                counts[target] = count
    return counts


def _volumes(
    line: CommandLine, template: dict[str, Any], container: dict[str, Any], place: str, *, prerelease: bool
) -> None:
    found: list[dict[str, Any]] = []
    names: set[str | None] = set()  # of every volume added, converted or not: its mounts are not problems
    for where, text in line.values.get("add-volume", []):
        given = parse_dict(text, where, line.problems)
        if given.get("name") in names:
            line.problems.add(where, f"--add-volume adds volume {given['name']!r} twice")
            continue
        names.add(given.get("name"))
        if volume := _volume(given, where, line.problems, prerelease):
            found.append(volume)
    instances = _cloudsql(line, place)
    if instances:
        found.append({"name": "cloudsql", "cloudSqlInstance": {"instances": instances}})
    if found:
        template["volumes"] = found
    names.update(volume["name"] for volume in found)
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


def _volume(given: dict[str, str], where: str, problems: Problems, prerelease: bool) -> dict[str, Any] | None:
    kind, name = given.pop("type", None), given.pop("name", None)
    if kind not in _VOLUME_KEYS or name is None:
        problems.add(where, f"--add-volume needs name=NAME and type= one of {', '.join(_VOLUME_KEYS)}")
        return None
    required, optional = _VOLUME_KEYS[kind]
    later = _PRERELEASE_VOLUME_KEYS.get(kind, set())
    if missing := required - set(given):
        problems.add(where, f"a {kind} volume needs {', '.join(sorted(missing))}")
        return None
    if (early := later & set(given)) and not prerelease:
        keys = ", ".join(sorted(early))
        problems.add(where, f"a {kind} volume takes {keys} only under `gcloud beta|alpha run deploy`")
        return None
    if unknown := set(given) - required - optional - later:
        problems.add(where, f"a {kind} volume takes no {', '.join(sorted(unknown))}")
        return None
    if kind == "nfs" and ":/" not in given["location"]:
        problems.add(where, f"an nfs volume's location is SERVER:/PATH, got {given['location']!r}")
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
        if (given := line.value(flag)) is not None
        for name in parse_list(given[0])
    ]
    return [name if name.count(":") == 2 else f"{place}:{name}" for name in names]


def _service_level(line: CommandLine, service: dict[str, Any]) -> None:
    if scaling := _counts(line, "min", "max"):
        service["scaling"] = scaling
    if (ingress := line.value("ingress")) is not None:
        service["ingress"] = choice(ingress[0], _INGRESS, ingress[1], line.problems)
    if (description := line.value("description")) is not None:
        service["description"] = description[0]
    merged = {**line.pairs("labels"), **line.pairs("update-labels")}  # --labels: gcloud's alias
    labels = {key: value for key, (value, _) in merged.items()}
    if labels:
        service["labels"] = labels
    line.switch("allow-unauthenticated")  # IAM, not a field of the service: read for its contradictions only
