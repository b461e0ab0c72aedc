"""The README's field reference is the one the schema generates, and the generator says what a schema
allows: each field once, by its path, with its type, limits, default and meaning."""

from __future__ import annotations

import re
from typing import Any

from desired.jsonschema import schema_document
from desired.reference import field_reference, markdown_reference
from tests.conftest import ROOT

BEGIN = re.compile(r"<!-- reference:begin[^>]*-->\n")
END = "<!-- reference:end -->"


def readme_reference() -> str:
    text = (ROOT / "README.md").read_text()
    start = BEGIN.search(text)
    assert start, "README.md has no <!-- reference:begin --> marker"
    return text[start.end() : text.index(END, start.end())]


def test_the_readme_reference_is_the_generated_one() -> None:
    assert readme_reference() == markdown_reference(), (
        "the README's desired-state reference is stale: replace what lies between its reference "
        "markers with the output of `cloudrun-reconciler schema --markdown`"
    )


def _rows(table: str) -> dict[str, list[str]]:
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def _paths(root: dict[str, Any], node: dict[str, Any], prefix: str) -> set[str]:
    """Every property path of the schema, found independently of the renderer."""
    found = set()
    for name, field in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        found.add(path)
        text = repr(field)
        for ref in set(re.findall(r"#/\$defs/(\w+)", text)):
            target = root["$defs"][ref]
            if "properties" in target:
                is_list = field.get("type") == "array"
                is_map = field.get("type") == "object" and "properties" not in field
                inner = f"{path}[]." if is_list else f"{path}.*." if is_map else f"{path}."
                found |= _paths(root, target, inner)
    return found


def test_every_field_of_the_schema_has_exactly_one_row() -> None:
    schema = schema_document()
    rows = _rows(markdown_reference())
    assert set(rows) == _paths(schema, schema, "")
    assert len(markdown_reference().splitlines()) == len(rows) + 2


def test_every_row_says_what_the_field_means() -> None:
    assert [path for path, (_, _, meaning) in _rows(markdown_reference()).items() if not meaning] == []


def test_a_row_shows_type_limits_required_default_and_meaning() -> None:
    schema = {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Item"}},
            "mode": {"$ref": "#/$defs/Mode", "default": "fast"},
        },
        "$defs": {
            "Mode": {"enum": ["fast", "safe"], "description": "How | to go."},
            "Item": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 10, "description": "How big."},
                    "tags": {
                        "anyOf": [
                            {"type": "object", "additionalProperties": {"type": "string"}},
                            {"type": "null"},
                        ],
                        "default": None,
                        "description": "Tags\n  by key.",
                    },
                },
            },
        },
    }
    assert _rows(field_reference(schema)) == {
        "items": ["list of object, at least 1 item, **required**", "", ""],
        "items[].size": ["integer 1–10, **required**", "", "How big."],
        "items[].tags": ["map of string", "", "Tags by key."],
        "mode": ["`fast` or `safe`", "`fast`", "How \\| to go."],
    }


def test_schema_markdown_prints_the_reference(capsys: Any) -> None:
    from controller.cli import main

    assert main(["schema", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown_reference()
