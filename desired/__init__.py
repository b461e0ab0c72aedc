"""The declared state of a Cloud Run fleet: its schema, loading it from YAML, and its policy checks.

This package owns `desired-state.yaml` as a contract. It imports nothing from `controller/` and
nothing from Google: what it hands out are frozen pydantic models, and what it raises on bad input
is a `DesiredStateError` whose findings each name the file, line, column and field.
"""

from desired.duration import format_duration, parse_duration
from desired.fields import EnvValue, PlainValue, SecretRef, ServiceKey
from desired.findings import DesiredStateError, Finding, Severity
from desired.load import CheckedDesired, check_desired, check_desired_text, load_desired, load_desired_text
from desired.policy import CHECKS
from desired.schema import (
    API_VERSION,
    CloudSqlSpec,
    CloudSqlTarget,
    ContentionSignal,
    ControllerSettings,
    DatabaseSpec,
    DesiredState,
    EscalationSpec,
    ExecutionEnvironment,
    OutOfBandPolicy,
    ScalingLevel,
    ScalingSpec,
    ServiceSpec,
    SqliteDialect,
    StorageErrorSignal,
    VolumeSpec,
)

__all__ = [
    "API_VERSION",
    "CHECKS",
    "CheckedDesired",
    "CloudSqlSpec",
    "CloudSqlTarget",
    "ContentionSignal",
    "ControllerSettings",
    "DatabaseSpec",
    "DesiredState",
    "DesiredStateError",
    "EnvValue",
    "EscalationSpec",
    "ExecutionEnvironment",
    "Finding",
    "OutOfBandPolicy",
    "PlainValue",
    "ScalingLevel",
    "ScalingSpec",
    "SecretRef",
    "ServiceKey",
    "ServiceSpec",
    "Severity",
    "SqliteDialect",
    "StorageErrorSignal",
    "VolumeSpec",
    "check_desired",
    "check_desired_text",
    "format_duration",
    "load_desired",
    "load_desired_text",
    "parse_duration",
]
