"""The field reference of `desired-state.yaml`, rendered from its JSON Schema as one Markdown table.

Owns turning the schema into one row per field: its path in the file (`services[].scaling.level`; `[]`
for a list's items, `*` for a map's keys), its type with its limits, its default, and what it means (the
field's docstring in `desired.schema`). The README's reference is this function's output, never written
by hand: `cloudrun-reconciler schema --markdown` prints it, and a test fails when the README's copy
differs. Pure: a schema in, text out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from desired.jsonschema import schema_document

__all__ = ["field_reference", "markdown_reference"]

_INT32_MAX = 2**31 - 1
Node = Mapping[str, Any]


def markdown_reference() -> str:
    """The reference of the schema `cloudrun-reconciler schema` prints, fields in declaration order."""
    return field_reference(schema_document())


def field_reference(schema: Node) -> str:
    """A Markdown table with a row for every field the schema allows, in the schema's order."""
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    lines += [
        f"| `{path}` | {kind} | {default} | {_cell(meaning)} |"
        for path, kind, default, meaning in _fields(schema, schema, "")
    ]
    return "\n".join(lines) + "\n"


def _fields(root: Node, node: Node, prefix: str) -> Iterator[tuple[str, str, str, str]]:
    """(path, type, default, meaning) of each property of an object schema, then of what it holds."""
    required = set(node.get("required", ()))
    for name, field in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        kind = _kind(root, field) + (", **required**" if name in required else "")
        yield path, kind, _default(field), _meaning(root, field)
        yield from _inside(root, field, path)


def _inside(root: Node, field: Node, path: str) -> Iterator[tuple[str, str, str, str]]:
    """The rows of whatever objects a field holds: itself, its list's items, or its map's values."""
    for alternative in _alternatives(root, field):
        if alternative.get("type") == "array" and "items" in alternative:
            item = _resolve(root, alternative["items"])
            if "properties" in item:
                yield from _fields(root, item, f"{path}[].")
        elif "properties" in alternative:
            yield from _fields(root, alternative, f"{path}.")
        elif alternative.get("type") == "object":
            values = _map_values(alternative)
            for value in _alternatives(root, values) if values is not None else ():
                if "properties" in value:
                    yield from _fields(root, value, f"{path}.*.")


def _resolve(root: Node, node: Node) -> Node:
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        target: Node = root["$defs"][name]
        return target
    return node


def _alternatives(root: Node, node: Node) -> list[Node]:
    """The schemas a value may match, `$ref`s followed, `null` (an optional field's absence) left out."""
    node = _resolve(root, node)
    for key in ("anyOf", "oneOf"):
        if key in node and "type" not in node:
            return [alt for option in node[key] for alt in _alternatives(root, option)]
    return [] if node.get("type") == "null" else [node]


def _map_values(node: Node) -> Node | None:
    values = node.get("additionalProperties")
    if isinstance(values, Mapping):
        return values
    patterns = node.get("patternProperties")
    return next(iter(patterns.values())) if patterns else None


def _kind(root: Node, node: Node) -> str:
    """What a value may be, with its limits: `string`, `integer 1–3600`, `list of string, 1–10 items`."""
    kinds = [_one_kind(root, alternative) for alternative in _alternatives(root, node)]
    return " or ".join(dict.fromkeys(kinds))


def _one_kind(root: Node, node: Node) -> str:
    if "const" in node:
        return f"`{node['const']}`"
    if "enum" in node:
        return " or ".join(f"`{value}`" for value in node["enum"])
    kind = node.get("type")
    if kind == "array":
        items = _kind(root, node.get("items", {})) or "anything"
        return f"list of {items}{_count(node, 'Items', 'item')}"
    if kind == "object":
        values = _map_values(node)
        if "properties" in node or values is None:
            return "object"
        return f"map of {_kind(root, values)}"
    if kind in ("integer", "number"):
        return f"{kind}{_range(node)}"
    if kind == "string":
        examples = node.get("examples")
        length = _count(node, "Length", "character")
        return "string" + (f" ({', '.join(map(str, examples))})" if examples else "") + length
    return str(kind or "")


def _range(node: Node) -> str:
    low = node.get("minimum")
    high = node.get("maximum")
    above = node.get("exclusiveMinimum")
    bounds = []
    if above is not None:
        bounds.append(f"> {above}")
    if low is not None and high is not None and high != _INT32_MAX:
        return f" {low}–{high}"
    if low is not None:
        bounds.append(f"≥ {low}")
    if high is not None and high != _INT32_MAX:
        bounds.append(f"≤ {high}")
    return (" " + ", ".join(bounds)) if bounds else ""


def _count(node: Node, suffix: str, noun: str) -> str:
    low, high = node.get(f"min{suffix}"), node.get(f"max{suffix}")
    if low is not None and high is not None:
        return f", {low}–{high} {noun}s"
    if low is not None and low > 0:
        return f", at least {low} {noun}" + ("s" if low != 1 else "")
    if high is not None:
        return f", at most {high} {noun}s"
    return ""


def _default(node: Node) -> str:
    if node.get("default") is None:
        return ""
    value = node["default"]
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`"


def _meaning(root: Node, node: Node) -> str:
    """The field's own description; else that of the one object or enum it holds."""
    if node.get("description"):
        return str(node["description"])
    described = [alt for alt in _alternatives(root, node) if alt.get("description")]
    return str(described[0]["description"]) if len(described) == 1 else ""


def _cell(text: str) -> str:
    """Text fit for one table cell: one line, `|` escaped."""
    return " ".join(text.split()).replace("|", "\\|")
