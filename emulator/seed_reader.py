"""Reading a seed document with a path for every value: what the converters of each seed shape share.

Owns `SeedError` and `Node`, a mapping read key by key: each key taken is checked for its type, what is
left untaken at the end is reported as an unknown field, and every problem carries the path where it was
found. Problems are collected rather than raised one at a time, so one error names all of a file's
problems, each with its place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Node", "Problems", "SeedError", "at", "item"]


class SeedError(ValueError):
    """A seed that cannot be read as Cloud Run services; one line per problem, each `file: path: reason`."""


class Problems:
    """The problems found in one seed file, in the order they were found."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, path: str, reason: str) -> None:
        self.found.append(f"{path}: {reason}" if path else reason)

    def raise_if_any(self, source: str) -> None:
        if self.found:
            raise SeedError("\n".join(f"{source}: {problem}" for problem in self.found))


def at(path: str, key: str) -> str:
    """The path of `key` under `path`; keys that are not identifiers are bracketed, as labels are."""
    if key.replace("_", "").replace("@", "").isalnum():
        return f"{path}.{key}" if path else key
    return f"{path}[{key}]"


def item(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


class Node:
    """One mapping of a seed, read key by key; `finish()` reports every key nobody took."""

    def __init__(self, value: Mapping[str, Any], path: str, problems: Problems) -> None:
        self.value = value
        self.path = path
        self.problems = problems
        self._taken: set[str] = set()

    @classmethod
    def of(cls, value: Any, path: str, problems: Problems) -> Node | None:
        if isinstance(value, Mapping):
            return cls(value, path, problems)
        problems.add(path, f"expected a mapping, got {_kind(value)}")
        return None

    def at(self, key: str) -> str:
        return at(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.value

    def problem(self, key: str | tuple[str, ...], reason: str) -> None:
        """A problem at `key` under this mapping (a tuple: keys below it, as `("labels", NAME)`; `()`: the
        mapping itself)."""
        path = self.path
        for part in (key,) if isinstance(key, str) else key:
            path = at(path, part)
        self.problems.add(path, reason)

    def raw(self, key: str) -> Any:
        self._taken.add(key)
        return self.value.get(key)

    def drop(self, *keys: str) -> None:
        """Keys that are read and not converted: output-only fields the emulator computes itself."""
        self._taken.update(keys)

    def text(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None or isinstance(value, str):
            return value
        self.problem(key, f"expected a string, got {_kind(value)}")
        return None

    def number(self, key: str) -> int | None:
        """An integer, also as a string of digits (annotations and hand-written YAML both occur)."""
        value = self.raw(key)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        self.problem(key, f"expected a whole number, got {value!r}")
        return None

    def flag(self, key: str) -> bool | None:
        """A boolean, also as the strings "true" / "false" annotations carry."""
        value = self.raw(key)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.problem(key, f"expected true or false, got {value!r}")
        return None

    def child(self, key: str) -> Node | None:
        value = self.raw(key)
        return None if value is None else Node.of(value, self.at(key), self.problems)

    def children(self, key: str) -> list[Node]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected a list, got {_kind(value)}")
            return []
        nodes = (
            Node.of(entry, item(self.at(key), index), self.problems) for index, entry in enumerate(value)
        )
        return [node for node in nodes if node is not None]

    def texts(self, key: str) -> list[str]:
        value = self.raw(key)
        if value is None:
            return []
        if isinstance(value, list) and all(isinstance(entry, str) for entry in value):
            return list(value)
        self.problem(key, f"expected a list of strings, got {_kind(value)}")
        return []

    def text_map(self, key: str) -> dict[str, str]:
        """Labels or annotations: every value must be a string, as in Kubernetes."""
        node = self.child(key)
        if node is None:
            return {}
        found: dict[str, str] = {}
        for name in node.value:
            value = node.text(str(name))
            if value is not None:
                found[str(name)] = value
        return found

    def finish(self, hints: Mapping[str, str] | None = None) -> None:
        """Report every key nobody took as an unknown field, with a hint where one is known."""
        for key in self.value:
            if key not in self._taken:
                hint = (hints or {}).get(str(key))
                self.problem(str(key), "unknown field" + (f": {hint}" if hint else ""))
