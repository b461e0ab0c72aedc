"""What is wrong in a desired file, and where: `Finding`s and the error that carries them.

Owns the one format every finding prints in, `file:line:column CODE field: message`, with the fix on the
next line, and the codes of schema errors (CR0xx; policy checks own CR1xx and up in `desired.policy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from desired.redaction import redact_text

__all__ = ["SCHEMA_CODES", "DesiredStateError", "Finding", "Severity"]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"  # an acknowledged check: still shown, no longer blocking


# Schema errors are never acknowledgeable: the API itself would refuse the value, or it is not a value at all.
SCHEMA_CODES: dict[str, str] = {
    "CR001": "invalid value",
    "CR002": "unknown field",
    "CR003": "not valid YAML",
    "CR004": "duplicate key",
    "CR005": "required field missing",
    "CR006": "no project or region",
    "CR007": "service declared twice",
    "CR010": "timeout out of range",
    "CR011": "min instances above max",
    "CR012": "instance bound out of range",
}


@dataclass(frozen=True)
class Finding:
    """One finding, with a position a person and an editor can jump to."""

    file: str
    line: int
    column: int
    code: str
    field: str
    message: str
    severity: Severity = Severity.ERROR
    fix: str = ""
    acknowledged: str = ""
    service_index: int | None = None

    def __post_init__(self) -> None:
        # A finding quotes what the file holds, and the file can hold credentials: mask them here, once,
        # so no caller can print one.
        for name in ("field", "message", "fix"):
            object.__setattr__(self, name, redact_text(getattr(self, name)))

    def __str__(self) -> str:
        field = f" {self.field}:" if self.field else ""
        head = f"{self.file}:{self.line}:{self.column} {self.code}{field} {self.message}"
        if self.severity is Severity.WARNING:
            head += " [warning]"
        elif self.severity is Severity.NOTE:
            head += f" [acknowledged: {self.acknowledged}]"
        return head

    def describe(self) -> str:
        """The finding and, indented under it, its fix."""
        return f"{self}\n    fix: {self.fix}" if self.fix else str(self)

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "severity": str(self.severity),
            "field": self.field,
            "message": self.message,
            "fix": self.fix,
            "acknowledged": self.acknowledged or None,
        }


class DesiredStateError(Exception):
    """The desired file is invalid; `findings` lists every problem found, in file order."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = tuple(sorted(findings, key=lambda f: (f.file, f.line, f.column, f.code, f.field)))
        super().__init__("\n".join(str(finding) for finding in self.findings))
