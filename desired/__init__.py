"""The declared state of a Cloud Run fleet: its schema, loading it from YAML, and its errors.

This package owns `desired-state.yaml` as a contract. It imports nothing from `controller/` and
nothing from Google: what it hands out are frozen pydantic models, and what it raises on bad input
is a `DesiredStateError` whose findings each name the file, line, column and field.
"""

from desired.duration import format_duration, parse_duration
from desired.load import DesiredStateError, Finding, load_desired, load_desired_text
from desired.schema import (
    DesiredState,
    EnvValue,
    PlainValue,
    ScalingLevel,
    ScalingSpec,
    SecretRef,
    ServiceKey,
    ServiceSpec,
)

__all__ = [
    "DesiredState",
    "DesiredStateError",
    "EnvValue",
    "Finding",
    "PlainValue",
    "ScalingLevel",
    "ScalingSpec",
    "SecretRef",
    "ServiceKey",
    "ServiceSpec",
    "format_duration",
    "load_desired",
    "load_desired_text",
    "parse_duration",
]
