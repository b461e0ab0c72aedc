"""The JSON Schema of `desired-state.yaml`, generated from the models, for editors and reviewers.

Owns the one function that renders it. The checked-in copy (`desired-state.schema.json`, referenced
from the root file by a `yaml-language-server` modeline) is regenerated with `cloudrun-reconciler schema
--write desired-state.schema.json`; a test fails when it falls out of date.
"""

from __future__ import annotations

import json
from typing import Any

from desired.schema import API_VERSION, DesiredState

__all__ = ["json_schema", "schema_document"]


def schema_document() -> dict[str, Any]:
    """The schema as a dict, its properties in the order the models declare them."""
    schema = DesiredState.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://cloudrun-reconciler.dev/schema/{API_VERSION.split('/')[-1]}/desired-state.json",
        **schema,
        "title": "cloudrun-reconciler desired state",
    }


def json_schema() -> str:
    """The schema as stable, indented JSON text ending in a newline."""
    return json.dumps(schema_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
