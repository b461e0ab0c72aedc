"""Reading YAML while remembering where every value came from.

Owns the one thing PyYAML does not give: a map from each value's path (`("services", 0, "timeout")`)
to its line and column, so that a validation error can point into the file. It also refuses what
PyYAML silently accepts: a key given twice in one mapping is an error here, not a last-one-wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["Mark", "PositionedDocument", "YamlSyntaxError", "parse_yaml"]

Path = tuple[str | int, ...]
_MAX_DEPTH = 64
_MAX_NODES = 100_000  # aliases can expand a small file into a huge value ("billion laughs")


@dataclass(frozen=True, slots=True)
class Mark:
    """A 1-based line and column in the source text."""

    line: int
    column: int


@dataclass(frozen=True)
class YamlSyntaxError(Exception):
    """The text is not YAML we accept; `mark` says where."""

    mark: Mark
    reason: str
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class PositionedDocument:
    """The parsed value plus, for each path, where its key and its value start."""

    value: Any
    key_marks: dict[Path, Mark]
    value_marks: dict[Path, Mark]
    duplicates: tuple[YamlSyntaxError, ...] = ()  # keys given twice: errors, reported with all the others

    def locate(self, path: Path, *, at_key: bool = False) -> Mark:
        """The closest known position for `path`, walking up to its parents when needed."""
        marks = self.key_marks if at_key else self.value_marks
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in marks:
                return marks[prefix]
            if prefix in self.value_marks:
                return self.value_marks[prefix]
        return Mark(1, 1)


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turns the composed node tree into plain values and marks, releasing the tree as it goes: a node
    is emptied once built unless an alias reaches it again (`shared`), and a scalar's constructed value
    is not cached (scalars are immutable: building one again gives an equal value). A large desired file
    so never holds its node tree and its values at once."""

    def __init__(self, shared: set[int]) -> None:
        self.loader = yaml.SafeLoader("")
        self.key_marks: dict[Path, Mark] = {}
        self.value_marks: dict[Path, Mark] = {}
        self.nodes = 0
        self.duplicates: list[YamlSyntaxError] = []
        self.shared = shared

    def _construct(self, node: yaml.Node, *, deep: bool = False) -> Any:
        value = self.loader.construct_object(node, deep=deep)
        self.loader.constructed_objects.pop(node, None)
        return value

    def build(self, node: yaml.Node, path: Path) -> Any:
        if len(path) > _MAX_DEPTH:
            raise YamlSyntaxError(_mark(node), f"nesting deeper than {_MAX_DEPTH} levels")
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise YamlSyntaxError(_mark(node), f"more than {_MAX_NODES} values once aliases are expanded")
        self.value_marks[path] = _mark(node)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            built = (
                self._mapping(node, path)
                if isinstance(node, yaml.MappingNode)
                else [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
            )
            if id(node) not in self.shared:
                node.value = []  # built: its children may go
            return built
        if node.tag == "tag:yaml.org,2002:int" and ":" in node.value:
            return node.value  # YAML 1.1 base-60 (`1:30` = 90): read it as the text that was written
        try:
            return self._construct(node, deep=True)
        except yaml.YAMLError as error:
            raise YamlSyntaxError(_mark(node), str(error).splitlines()[0]) from None
        except ValueError:  # an integer longer than Python converts (4300 digits)
            raise YamlSyntaxError(_mark(node), "this number has too many digits to read") from None

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        seen: dict[Any, Mark] = {}
        known: dict[int, Any] = {}  # key node → key, read once
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = known[id(key_node)] = self._key(key_node)
            if key in seen:
                first = seen[key]
                self.duplicates.append(
                    YamlSyntaxError(
                        _mark(key_node),
                        f"duplicate key {key!r} (first given at line {first.line})",
                        (*path, key),
                    )
                )
                continue
            seen[key] = _mark(key_node)
        try:
            self.loader.flatten_mapping(node)  # resolves `<<: *anchor`; own keys follow merged ones
        except yaml.YAMLError as error:
            raise YamlSyntaxError(_mark(node), str(error).splitlines()[0]) from None
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = (
                known[id(key_node)] if id(key_node) in known else self._key(key_node)
            )  # merged ones: not yet
            self.key_marks[(*path, key)] = _mark(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result

    def _key(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise YamlSyntaxError(_mark(node), "a mapping key must be a plain scalar")
        try:
            key = self._construct(node)
        except (yaml.YAMLError, ValueError) as error:
            reason = str(error).splitlines()[0]
            raise YamlSyntaxError(_mark(node), f"cannot read this key: {reason}") from None
        return key if isinstance(key, str | int | float | bool) or key is None else str(key)


def _described(error: yaml.MarkedYAMLError) -> tuple[Mark, str]:
    """Where the parser stopped, and what it was reading when it did (`while scanning a quoted scalar`)."""
    mark = error.problem_mark or error.context_mark
    where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
    problem = error.problem or "not valid YAML"
    if error.context and error.context_mark:
        started = error.context_mark.line + 1
        return where, f"{error.context} (from line {started}): {problem}"
    if error.context:
        return where, f"{error.context}: {problem}"
    return where, problem


def parse_yaml(text: str) -> PositionedDocument:
    """Parse one YAML document; raise YamlSyntaxError with a position on anything malformed."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        raise YamlSyntaxError(*_described(error)) from None
    except yaml.YAMLError as error:
        raise YamlSyntaxError(Mark(1, 1), str(error).splitlines()[0]) from None
    except RecursionError:
        raise YamlSyntaxError(
            Mark(1, 1), f"nesting too deep to read (at most {_MAX_DEPTH} levels are allowed)"
        ) from None
    if node is None:
        return PositionedDocument(None, {}, {})
    builder = _Builder(_shared(node) if "*" in text else set())  # no `*`, no alias: nothing is shared
    try:
        value = builder.build(node, ())
    except RecursionError:
        raise YamlSyntaxError(_mark(node), "the document refers to itself through an alias") from None
    return PositionedDocument(value, builder.key_marks, builder.value_marks, tuple(builder.duplicates))


def _shared(root: yaml.Node) -> set[int]:
    """The ids of the nodes the tree reaches by more than one path (through aliases): those reached from
    more than one place, and everything under them. Each node is walked at most twice."""
    references: dict[int, int] = {}
    by_id: dict[int, yaml.Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        for child in _children(node):
            references[id(child)] = references.get(id(child), 0) + 1
            if id(child) not in by_id:
                by_id[id(child)] = child
                stack.append(child)
    shared: set[int] = set()
    stack = [by_id[key] for key, count in references.items() if count > 1]
    while stack:
        node = stack.pop()
        if id(node) not in shared:
            shared.add(id(node))
            stack.extend(_children(node))
    return shared


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
