"""Reading live services for the emulator from a seed file, whatever shape it comes in.

Owns the one entry point, `load_seed_file` (and `load_seed_text` for a body already in hand, as the
control endpoint has), and telling the shapes apart:
  - Cloud Run v2 JSON (`gcloud run services describe --format=json` of the v2 API, what the API returns):
    one Service, a list of them, or `{services: [...]}`, in JSON or YAML;
  - v1 Knative (`apiVersion: serving.knative.dev/v1`, `kind: Service`, as `gcloud run services describe
    --format=yaml` prints it and `gcloud run services replace` takes it), one or several YAML documents;
  - a `gcloud [alpha|beta] run deploy SERVICE --flag...` command line: as shell text, or as a list of
    words, under `gcloud_argv:` (or `NAME_argv:`) in YAML.
Each shape is converted to v2, then parsed strictly: unknown fields are errors, so a typo in a seed never
goes unseen. Every problem of a file is reported at once, one line each, `file: path: reason`. Shapes
that are not a service (gcloud's traffic rows, say) are refused with what they are.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from google.cloud import run_v2
from google.protobuf import json_format

from emulator.seed_gcloud import gcloud_service
from emulator.seed_knative import knative_service
from emulator.seed_reader import Node, Problems, SeedError, at, item

__all__ = ["SeedError", "load_seed_file", "load_seed_text", "service_from_dict"]

_TRAFFIC_ROW_KEYS = {"specPercent", "statusPercent", "displayPercent", "displayRevisionId"}
_COMMAND = re.compile(r"\s*gcloud\s")
_NOT_A_SERVICE = (
    "traffic rows (as `gcloud run services update-traffic --format=json` prints them), not a Service: "
    "they say which revisions get which share of requests, not how the service is configured, so there "
    "is nothing to seed from them; seed the service itself (`gcloud run services describe SERVICE "
    "--format=yaml`)"
)


def service_from_dict(data: dict[str, Any], where: str = "seed") -> Any:
    """One v2 Service from its JSON form; it must have a full `name`."""
    try:
        return _v2_service(data)
    except ValueError as error:
        raise SeedError(f"{where}: {error}") from None


def load_seed_file(path: str | Path, *, project: str | None = None, location: str | None = None) -> list[Any]:
    """Every service in the file at `path`; `project` and `location` name those the file leaves unplaced."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise SeedError(f"{path}: {error}") from None
    return load_seed_text(text, str(path), project=project, location=location)


def load_seed_text(
    text: str, source: str, *, project: str | None = None, location: str | None = None
) -> list[Any]:
    """Every service in `text`, read as a seed file named `source` (for the messages)."""
    problems = Problems()
    defaults = {"project": project, "location": location}
    found: list[tuple[str, dict[str, Any]]] = []
    if _COMMAND.match(_without_comments(text)):
        commands = _command_lines(text)
        for index, words in enumerate(commands):
            path = "argv" if len(commands) == 1 else f"commands[{index}]"
            found.append((path, gcloud_service(words, path, problems, **defaults)))
    else:
        try:
            documents = [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
        except yaml.YAMLError as error:
            raise SeedError(f"{source}: {error}") from None
        if not documents:
            problems.add("", "no service in the file")
        for index, document in enumerate(documents):
            place = "" if len(documents) == 1 else f"document[{index}]"
            found.extend(_services(document, place, problems, defaults))
    problems.raise_if_any(source)  # a shape that did not convert is not worth parsing as v2
    services = []
    for path, data in found:
        try:
            services.append(_v2_service(data))
        except ValueError as error:
            problems.add(path, str(error))
    names = [service.name for service in services]
    for name in sorted({name for name in names if names.count(name) > 1}):
        problems.add("", f"{name} is given more than once")
    problems.raise_if_any(source)
    return services


def _services(
    document: Any, path: str, problems: Problems, defaults: dict[str, str | None]
) -> list[tuple[str, dict[str, Any]]]:
    """The v2 JSON of every service in one YAML document, each with its path."""
    if isinstance(document, list):
        if document and all(isinstance(word, str) for word in document):
            return [(path, gcloud_service(document, path or "argv", problems, **defaults))]
        if any(isinstance(row, dict) and _TRAFFIC_ROW_KEYS & set(row) for row in document):
            problems.add(path, _NOT_A_SERVICE)
            return []
        return [
            found
            for index, entry in enumerate(document)
            for found in _one(entry, item(path, index), problems, defaults)
        ]
    if isinstance(document, dict) and any(_is_argv_key(key) for key in document):
        return _argv_document(document, path, problems, defaults)
    if isinstance(document, dict) and "services" in document:
        for key in set(document) - {"services"}:
            problems.add(at(path, str(key)), "unknown field beside `services`")
        return _services(document["services"], at(path, "services"), problems, defaults)
    return _one(document, path, problems, defaults)


def _one(
    entry: Any, path: str, problems: Problems, defaults: dict[str, str | None]
) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(entry, dict):
        problems.add(
            path, f"expected a Service (v2 JSON or v1 Knative) or a gcloud command line, got {entry!r:.60}"
        )
        return []
    if "apiVersion" in entry or "kind" in entry:
        return [(path, knative_service(Node(entry, path, problems), **defaults))]
    return [(path, entry)]


def _argv_document(
    document: dict[str, Any], path: str, problems: Problems, defaults: dict[str, str | None]
) -> list[tuple[str, dict[str, Any]]]:
    """`gcloud_argv: [run, deploy, ...]`, or several `NAME_argv` keys: one deploy command each."""
    found = []
    for key, words in document.items():
        where = at(path, str(key))
        if not _is_argv_key(key):
            problems.add(
                where,
                "not a command line: a document of gcloud commands holds only gcloud_argv or NAME_argv keys",
            )
        elif isinstance(words, str):
            found.append((where, gcloud_service(shlex.split(words), where, problems, **defaults)))
        elif isinstance(words, list) and all(isinstance(word, str) for word in words):
            found.append((where, gcloud_service(words, where, problems, **defaults)))
        else:
            problems.add(where, "expected the words of a command line, as a list of strings")
    return found


def _is_argv_key(key: Any) -> bool:
    return isinstance(key, str) and (key == "gcloud_argv" or key.endswith("_argv"))


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _command_lines(text: str) -> list[list[str]]:
    """Each shell command of the text as its words; `\\` at a line's end continues it."""
    joined = re.sub(r"\\\r?\n", " ", _without_comments(text))
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


def _v2_service(data: dict[str, Any]) -> Any:
    service = run_v2.Service.pb()()
    try:
        json_format.ParseDict(data, service)
    except json_format.ParseError as error:
        raise ValueError(str(error)) from None
    parts = service.name.split("/")
    if len(parts) != 6 or parts[0::2] != ["projects", "locations", "services"] or "" in parts:
        raise ValueError(f"name must be projects/P/locations/L/services/S, got {service.name!r}")
    return service


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping, instead of keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
