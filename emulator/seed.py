"""Reading live services for the emulator from files: Cloud Run v2 JSON, in a JSON or YAML file.

Owns the seed formats: one Service object, a list of them, or `{services: [...]}`, each in the REST
JSON shape `gcloud run services describe --format=json` and the API return (camelCase, `"300s"`).
Unknown fields are errors, so a typo in a seed never goes unseen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from google.cloud import run_v2
from google.protobuf import json_format

__all__ = ["SeedError", "load_seed_file", "service_from_dict"]


class SeedError(ValueError):
    """A seed file that cannot be read as Cloud Run v2 services."""


def service_from_dict(data: dict[str, Any], where: str = "seed") -> Any:
    """One v2 Service from its JSON form; it must have a full `name`."""
    service = run_v2.Service.pb()()
    try:
        json_format.ParseDict(data, service)
    except json_format.ParseError as error:
        raise SeedError(f"{where}: {error}") from None
    parts = service.name.split("/")
    if len(parts) != 6 or parts[0::2] != ["projects", "locations", "services"]:
        raise SeedError(f"{where}: name must be projects/P/locations/L/services/S, got {service.name!r}")
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


def load_seed_file(path: str | Path) -> list[Any]:
    """Every service in the file at `path`."""
    try:
        document = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_StrictLoader)
    except (OSError, yaml.YAMLError) as error:
        raise SeedError(f"{path}: {error}") from None
    if isinstance(document, dict) and "services" in document:
        document = document["services"]
    items = document if isinstance(document, list) else [document]
    if not all(isinstance(item, dict) for item in items):
        raise SeedError(f"{path}: expected a Service object, a list of them, or {{services: [...]}}")
    return [service_from_dict(item, f"{path}: services[{index}]") for index, item in enumerate(items)]
