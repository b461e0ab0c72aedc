"""Loading `desired-state.yaml` into a `DesiredState`, or failing with every error and where it is.

Owns the translation from YAML and pydantic errors to findings of the form
`file:line:column field: reason`, and the checks across services (defaults, duplicates) that need
positions. A document either loads whole or raises `DesiredStateError`; nothing half-valid leaves here.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ValidationError

from desired.schema import DesiredState, ServiceSpec
from desired.yamlpos import Path, PositionedDocument, YamlSyntaxError, parse_yaml

__all__ = ["DesiredStateError", "Finding", "load_desired", "load_desired_text"]


@dataclass(frozen=True)
class Finding:
    """One problem in the file, with a position a person and an editor can jump to."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        field = f" {self.field}:" if self.field else ""
        return f"{self.file}:{self.line}:{self.column}{field} {self.message}"


class DesiredStateError(Exception):
    """The desired file is invalid; `findings` lists every problem found, in file order."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = tuple(sorted(findings, key=lambda f: (f.file, f.line, f.column, f.field)))
        super().__init__("\n".join(str(finding) for finding in self.findings))


def load_desired(path: str | FsPath) -> DesiredState:
    """Read and validate the file at `path`."""
    name = str(path)
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise DesiredStateError([Finding(name, 1, 1, "", f"cannot read the file: {reason}")]) from None
    return load_desired_text(text, name)


def load_desired_text(text: str, filename: str = "<desired>") -> DesiredState:
    """Validate `text` as a desired-state document; `filename` only labels the findings."""
    try:
        document = parse_yaml(text)
    except YamlSyntaxError as error:
        mark = error.mark
        raise DesiredStateError(
            [Finding(filename, mark.line, mark.column, _field_name(error.path), error.reason)]
        ) from None
    if not isinstance(document.value, dict):
        raise DesiredStateError(
            [Finding(filename, 1, 1, "", "expected a mapping with `services:` at the top")]
        )
    try:
        state = DesiredState.model_validate(document.value)
    except ValidationError as error:
        raise DesiredStateError([_finding(filename, document, e) for e in error.errors()]) from None
    return _resolve(state, document, filename)


def _resolve(state: DesiredState, document: PositionedDocument, filename: str) -> DesiredState:
    findings: list[Finding] = []
    resolved: list[ServiceSpec] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, service in enumerate(state.services):
        project = service.project or state.defaults.project
        region = service.region or state.defaults.region
        for field, value in (("project", project), ("region", region)):
            if value is None:
                mark = document.locate(("services", index))
                findings.append(
                    Finding(
                        filename,
                        mark.line,
                        mark.column,
                        f"services[{index}].{field}",
                        f"no {field} for service {service.name!r}: set it here or in defaults.{field}",
                    )
                )
        if project is None or region is None:
            continue
        identity = (project, region, service.name)
        if identity in seen:
            mark = document.locate(("services", index, "name"))
            findings.append(
                Finding(
                    filename,
                    mark.line,
                    mark.column,
                    f"services[{index}].name",
                    f"service {service.name!r} in {project}/{region} is already declared at "
                    f"services[{seen[identity]}]",
                )
            )
        seen[identity] = index
        resolved.append(service.model_copy(update={"project": project, "region": region}))
    if findings:
        raise DesiredStateError(findings)
    return state.model_copy(update={"services": resolved})


def _document_path(document: PositionedDocument, loc: tuple[int | str, ...]) -> Path:
    """Follow pydantic's `loc` through the parsed value, dropping union tags and validator names."""
    path: list[str | int] = []
    node: Any = document.value
    for part in loc:
        if _is_tag(part) or not _has(node, part):
            continue
        node = node[part]
        path.append(part)
    return tuple(path)


def _has(node: Any, part: int | str) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _is_tag(part: int | str) -> bool:
    """Pydantic puts union tags such as `<secret-ref>` into `loc`; they are not keys of the file."""
    return isinstance(part, str) and part.startswith("<")


def _field_name(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _finding(filename: str, document: PositionedDocument, error: Any) -> Finding:
    loc = tuple(error["loc"])
    kind = error["type"]
    path = _document_path(document, loc)
    if kind == "extra_forbidden":
        path = (*path[:-1], loc[-1]) if path and path[-1] == loc[-1] else (*path, loc[-1])
        mark = document.locate(path, at_key=True)
        message = _unknown_field_message(str(loc[-1]), _allowed_keys(loc[:-1]))
    elif kind == "missing":
        mark = document.locate(path)
        path = (*path, loc[-1])
        message = "is required"
    else:
        mark = document.locate(path)
        message = _plain_message(error["msg"])
    return Finding(filename, mark.line, mark.column, _field_name(path), message)


def _plain_message(message: str) -> str:
    for prefix, replacement in (("Value error, ", ""), ("Input should be", "must be")):
        if message.startswith(prefix):
            message = replacement + message[len(prefix) :]
    if message[1:2].islower():  # "Input should…" reads "input should…", "PORT is…" stays
        message = message[:1].lower() + message[1:]
    return message


def _unknown_field_message(key: str, allowed: list[str]) -> str:
    if not allowed:
        return "unknown field"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field (allowed: {', '.join(allowed)}){hint}"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the schema accepts at `loc`, found by walking the models along it."""
    current: Any = DesiredState
    for part in (p for p in loc if not _is_tag(p)):
        current = _step(current, part)
        if current is None:
            return []
    model = _model_in(current)
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _step(annotation: Any, part: int | str) -> Any:
    model = _model_in(annotation)
    if model is not None and isinstance(part, str):
        for name, field in model.model_fields.items():
            if part in (field.alias, name):
                return field.annotation
        return None
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (list, tuple) and isinstance(part, int) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (typing.Union, types.UnionType, typing.Annotated) and args:
        return args[0]
    return annotation  # a union tag or validator name: stay where we are


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
