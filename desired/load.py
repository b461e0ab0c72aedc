"""Loading `desired-state.yaml`: parse, validate, resolve defaults, run the policy checks.

Owns the translation of YAML, pydantic and policy results into `Finding`s that name file, line, column,
code and field. Schema errors raise `DesiredStateError`: nothing half-valid leaves here. Policy findings
come back beside the valid state in a `CheckedDesired`, which says which services they block.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ValidationError

from desired.fields import ServiceKey
from desired.findings import DesiredStateError, Finding, Severity
from desired.policy import Violation, check_policy
from desired.schema import DesiredState, ServiceSpec
from desired.yamlpos import Path, PositionedDocument, YamlSyntaxError, parse_yaml

__all__ = ["CheckedDesired", "check_desired", "check_desired_text", "load_desired", "load_desired_text"]

_ERROR_CODES = {
    "extra_forbidden": "CR002",
    "missing": "CR005",
    "timeout_range": "CR010",
    "min_above_max": "CR011",
}


@dataclass(frozen=True)
class CheckedDesired:
    """A valid desired state and what the policy checks found in it."""

    state: DesiredState
    findings: tuple[Finding, ...]

    @property
    def has_errors(self) -> bool:
        return any(finding.severity is Severity.ERROR for finding in self.findings)

    def blocked_reasons(self) -> dict[ServiceKey, str]:
        """For each blocked service, the reason a plan prints."""
        return {
            key: "policy error(s) " + ", ".join(sorted({f.code for f in findings})) + " (see `validate`)"
            for key, findings in self.blocking().items()
        }

    def blocking(self) -> dict[ServiceKey, tuple[Finding, ...]]:
        """Unacknowledged errors by service: `apply` writes none of these services."""
        by_index: dict[int, list[Finding]] = {}  # one walk over the findings, not one per service
        for finding in self.findings:
            if finding.service_index is not None and finding.severity is Severity.ERROR:
                by_index.setdefault(finding.service_index, []).append(finding)
        return {
            spec.key: tuple(by_index[index])
            for index, spec in enumerate(self.state.services)
            if index in by_index
        }


def _read(path: str | FsPath) -> str:
    try:
        return FsPath(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise DesiredStateError(
            [Finding(str(path), 1, 1, "CR003", "", f"cannot read the file: {reason}")]
        ) from None


def load_desired(path: str | FsPath) -> DesiredState:
    """Read and validate the file at `path` (schema only; see `check_desired` for the policy)."""
    return load_desired_text(_read(path), str(path))


def check_desired(path: str | FsPath) -> CheckedDesired:
    """Read, validate and policy-check the file at `path`."""
    return check_desired_text(_read(path), str(path))


def load_desired_text(text: str, filename: str = "<desired>") -> DesiredState:
    """Validate `text` as a desired-state document; `filename` only labels the findings."""
    return _load(text, filename)[0]


def check_desired_text(text: str, filename: str = "<desired>") -> CheckedDesired:
    state, document = _load(text, filename)
    findings = tuple(_policy_finding(filename, document, v) for v in check_policy(state))
    return CheckedDesired(state, tuple(sorted(findings, key=lambda f: (f.line, f.column, f.code))))


def _load(text: str, filename: str) -> tuple[DesiredState, PositionedDocument]:
    try:
        document = parse_yaml(text)
    except YamlSyntaxError as error:
        mark, code = error.mark, "CR004" if error.path else "CR003"
        raise DesiredStateError(
            [Finding(filename, mark.line, mark.column, code, _field_name(error.path), error.reason)]
        ) from None
    if not isinstance(document.value, dict):
        raise DesiredStateError(
            [Finding(filename, 1, 1, "CR001", "", "expected a mapping with `services:` at the top")]
        )
    duplicates = [
        Finding(filename, d.mark.line, d.mark.column, "CR004", _field_name(d.path), d.reason)
        for d in document.duplicates
    ]
    try:
        state = DesiredState.model_validate(document.value)
    except ValidationError as error:
        raise DesiredStateError(
            [*duplicates, *(_finding(filename, document, e) for e in error.errors())]
        ) from None
    if duplicates:  # the document reads as valid with one of each pair, but which one was meant is unknown
        raise DesiredStateError(duplicates)
    return _resolve(state, document, filename), document


def _policy_finding(filename: str, document: PositionedDocument, violation: Violation) -> Finding:
    mark = document.locate(
        violation.path, at_key=violation.path[-1:] != ("name",) and _is_key(violation.path)
    )
    index = violation.path[1] if len(violation.path) > 1 and isinstance(violation.path[1], int) else None
    return Finding(
        filename,
        mark.line,
        mark.column,
        violation.code,
        _field_name(violation.path),
        violation.message,
        violation.severity,
        violation.fix,
        violation.acknowledged,
        index,
    )


def _is_key(path: Path) -> bool:
    """Findings about a key (an acknowledgement, a label name) point at the key, others at the value."""
    return len(path) >= 2 and path[-2] in ("acknowledge", "labels", "annotations")


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
                        "CR006",
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
                    "CR007",
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
    """`services[0].env.DATABASE_URL`; keys that hold dots or slashes are quoted: `labels["a.b/c"]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif any(char in str(part) for char in "./ "):
            text += f'["{part}"]'
        else:
            text += f".{part}" if text else str(part)
    return text


def _finding(filename: str, document: PositionedDocument, error: Any) -> Finding:
    loc = tuple(error["loc"])
    kind = error["type"]
    path = _document_path(document, loc)
    code = _ERROR_CODES.get(kind, "CR001")
    if kind == "greater_than_equal" and str(loc[-1]).endswith("Instances"):
        code = "CR012"
    if kind == "extra_forbidden":
        path = (*path[:-1], loc[-1]) if path and path[-1] == loc[-1] else (*path, loc[-1])
        mark = document.locate(path, at_key=True)
        message = _unknown_field_message(str(loc[-1]), _allowed_keys(loc[:-1]))
    elif kind == "missing":
        mark = document.locate(path, at_key=True)  # the key of the mapping that lacks it: `scaling:`
        path = (*path, loc[-1])
        message = "is required"
    else:
        mark = document.locate(path, at_key=loc[-1] == "[key]")  # a bad map key points at the key
        message = _MESSAGES.get(kind) or _plain_message(error["msg"])
    return Finding(filename, mark.line, mark.column, code, _field_name(path), message)


def _plain_message(message: str) -> str:
    for prefix, replacement in (("Value error, ", ""), ("Input should be", "must be")):
        if message.startswith(prefix):
            message = replacement + message[len(prefix) :]
    if message.split(" ", 1)[0] in _PYDANTIC_OPENINGS:  # "Input should…" reads "input should…"
        message = message[:1].lower() + message[1:]
    return message


# Pydantic's wording where it names its own internals.
_MESSAGES = {
    "model_type": "must be a mapping of fields",
    "model_attributes_type": "must be a mapping of fields",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "too_short": "must not be empty: declare at least one",
}
_PYDANTIC_OPENINGS = frozenset(
    {"Input", "Field", "String", "List", "Dictionary", "Value", "Extra", "Object", "Tuple", "Set", "Unable"}
)


def _unknown_field_message(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown field; did you mean {close[0]!r}?"
    return f"unknown field (allowed: {', '.join(allowed)})" if allowed else "unknown field"


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
