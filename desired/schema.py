"""The schema of `desired-state.yaml`: strict, frozen pydantic models for a fleet of Cloud Run services.

Owns what may be declared and the range of each value. Keys are camelCase, as in Kubernetes and in
Cloud Run's own YAML; an unknown key is an error, never ignored. Checks across values (defaults,
duplicates) live in `desired.load`; judgements about risky combinations live in `desired.policy`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from desired.fields import (
    INT32_MAX,
    EnvEntry,
    EnvName,
    ProjectId,
    Region,
    ServiceKey,
    ServiceName,
    StrictModel,
    TimeoutSeconds,
    duration_at_least,
    pattern,
)
from desired.redaction import redact_text

__all__ = [
    "API_VERSION",
    "CloudSqlSpec",
    "CloudSqlTarget",
    "ContentionSignal",
    "ControllerSettings",
    "DatabaseSpec",
    "Defaults",
    "DesiredState",
    "EscalationSpec",
    "ExecutionEnvironment",
    "OutOfBandPolicy",
    "ScalingLevel",
    "ScalingSpec",
    "ServiceSpec",
    "SqliteDialect",
    "StorageErrorSignal",
    "VolumeSpec",
]

API_VERSION = "cloudrun-reconciler/v1alpha1"
_VOLUME_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_BUCKET = re.compile(r"[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]")
_MOUNT_OPTION = re.compile(r"[a-z0-9][-a-z0-9_.]*(=[^\s,]+)?")
_METRIC_TYPE = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+/[A-Za-z0-9_./-]+")
_CLOUD_SQL_INSTANCE = re.compile(r"[a-z][-a-z0-9:.]*[a-z0-9]:[a-z]+-[a-z]+[0-9]+:[a-z][-a-z0-9]*")
_FORBIDDEN_MOUNTS = ("/dev", "/proc", "/sys")
_DNS_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _enum_value(kind: type[StrEnum]) -> Any:
    """Accept an enum by its lower-case spelling, with an error that lists the choices."""

    def parse(value: Any) -> Any:
        if isinstance(value, str) and value in kind._value2member_map_:
            return kind(value)
        if isinstance(value, kind):
            return value
        choices = ", ".join(repr(member.value) for member in kind)
        raise PydanticCustomError(
            "enum", "must be one of {choices}, got {got}", {"choices": choices, "got": repr(value)}
        )

    return parse


class ScalingLevel(StrEnum):
    """Where instance bounds live: service-wide `scaling`, or per revision in `template.scaling`."""

    SERVICE = "service"
    REVISION = "revision"


class ExecutionEnvironment(StrEnum):
    GEN1 = "gen1"
    GEN2 = "gen2"


class OutOfBandPolicy(StrEnum):
    """What to do when someone else changed an owned field since the controller last wrote the service."""

    REVERT = "revert"  # write the declared value back (the default)
    REPORT = "report"  # show the drift, write nothing
    STOP = "stop"  # show the drift, write nothing, and fail until a person decides


class SqliteDialect(StrEnum):
    """Whose URL syntax the SQLite URL follows: go-sqlite3 (mattn), modernc.org/sqlite, or Python."""

    MATTN = "mattn"
    MODERNC = "modernc"
    PYTHON = "python"


class ScalingSpec(StrictModel):
    """Instance bounds and the level they apply at; the level is never guessed."""

    level: Annotated[ScalingLevel, BeforeValidator(_enum_value(ScalingLevel))]
    min_instances: Annotated[int, Field(ge=0, le=INT32_MAX)] | None = None
    max_instances: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = None

    @field_validator("max_instances")
    @classmethod
    def _max_not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_instances")
        if value is not None and low is not None and low > value:
            raise PydanticCustomError(
                "min_above_max",
                "maxInstances ({high}) is below minInstances ({low})",
                {"high": value, "low": low},
            )
        return value


def _mount_path(path: str) -> str:
    if not path.startswith("/") or "//" in path or (path != "/" and path.endswith("/")):
        raise PydanticCustomError(
            "mount_path", "must be an absolute path such as /work, got {got}", {"got": repr(path)}
        )
    if any(path == root or path.startswith(root + "/") for root in _FORBIDDEN_MOUNTS) or path == "/":
        raise PydanticCustomError("mount_path", "Cloud Run refuses volumes mounted at /, /dev, /proc or /sys")
    return path


def _mount_options(options: list[str]) -> list[str]:
    keys = [option.split("=", 1)[0] for option in options]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise PydanticCustomError(
            "mount_options", "option {keys} given more than once", {"keys": ", ".join(duplicated)}
        )
    return options


class VolumeSpec(StrictModel):
    """A Cloud Storage bucket mounted through GCS FUSE into the managed container."""

    name: Annotated[
        str, pattern(_VOLUME_NAME, "volume name"), Field(json_schema_extra={"pattern": "^[a-z0-9-]+$"})
    ]
    bucket: Annotated[str, pattern(_BUCKET, "Cloud Storage bucket name")]
    mount_path: Annotated[
        str, AfterValidator(_mount_path), Field(json_schema_extra={"pattern": "^/(?!(dev|proc|sys)(/|$)).+"})
    ]
    mount_options: (
        Annotated[
            list[Annotated[str, pattern(_MOUNT_OPTION, "gcsfuse option (a flag without its leading --)")]],
            AfterValidator(_mount_options),
        ]
        | None
    ) = None  # left out: not managed
    read_only: bool | None = None  # left out: not managed


CloudSqlConnection = Annotated[
    str, pattern(_CLOUD_SQL_INSTANCE, "Cloud SQL connection name project:region:instance")
]


class CloudSqlSpec(StrictModel):
    """Cloud SQL instances mounted as the Cloud SQL Auth Proxy's sockets (`/cloudsql/PROJECT:REGION:NAME`).

    The escalation writes this for a service it moves to Cloud SQL; a service already on Cloud SQL may
    declare it too."""

    instances: Annotated[list[CloudSqlConnection], Field(min_length=1, max_length=10)]
    volume: Annotated[
        str, pattern(_VOLUME_NAME, "volume name"), Field(json_schema_extra={"pattern": "^[a-z0-9-]+$"})
    ] = "cloudsql"
    mount_path: Annotated[
        str, AfterValidator(_mount_path), Field(json_schema_extra={"pattern": "^/(?!(dev|proc|sys)(/|$)).+"})
    ] = "/cloudsql"


class DatabaseSpec(StrictModel):
    """Which env var holds the SQLite URL, and whose syntax it follows."""

    env: EnvName = "DATABASE_URL"
    dialect: Annotated[SqliteDialect, BeforeValidator(_enum_value(SqliteDialect))]


MetricType = Annotated[str, pattern(_METRIC_TYPE, "metric type such as logging.googleapis.com/user/NAME")]


class ContentionSignal(StrictModel):
    """`database is locked`: normal under load up to a point, so judged as a rate per request."""

    metric: MetricType
    max_rate: Annotated[float, Field(gt=0, le=1)]


class StorageErrorSignal(StrictModel):
    """`disk I/O error`, `database disk image is malformed`, `OutOfOrderError`: storage unfit for SQLite."""

    metric: MetricType
    max_count: Annotated[int, Field(ge=0)] = 0


class CloudSqlTarget(StrictModel):
    """Where the service goes when SQLite keeps failing."""

    instance: CloudSqlConnection
    database_url: EnvEntry


class EscalationSpec(StrictModel):
    """When to move the service from SQLite to Cloud SQL: a breach held over consecutive windows."""

    window: duration_at_least(60, "Cloud Monitoring's smallest alignment period") = 300  # type: ignore[valid-type]
    consecutive_windows: Annotated[int, Field(ge=1, le=1000)] = 3
    min_requests: Annotated[int, Field(ge=0)] = 20
    max_error_ratio: Annotated[float, Field(gt=0, le=1)] | None = None  # 5xx share above it: Degraded
    contention: ContentionSignal | None = None
    storage_errors: StorageErrorSignal | None = None
    cloud_sql: CloudSqlTarget | None = None

    @model_validator(mode="after")
    def _some_signal(self) -> EscalationSpec:
        if self.contention is None and self.storage_errors is None:
            raise PydanticCustomError("no_signal", "name at least one signal: contention or storageErrors")
        return self


def _label_text(kind: str, *, key: bool) -> Any:
    """Cloud Run labels: lowercase letters, digits, _ and -, at most 63; keys start with a letter."""

    def check(text: str) -> str:
        prefix, _, name = text.rpartition("/") if key else ("", "", text)
        allowed = all((c.isalpha() and c.islower()) or c.isdigit() or c in "_-" for c in name)
        starts = bool(name) and name[0].isalpha() and name[0].islower()
        good_prefix = not prefix or _DNS_PREFIX.fullmatch(prefix) is not None
        if len(name) > 63 or not allowed or not good_prefix or (key and not starts):
            raise PydanticCustomError(
                "label",
                "{text} is not a valid label {kind}: lowercase letters, digits, _ and - (at most 63)"
                + (", starting with a letter, after an optional domain/ prefix" if key else ""),
                {"text": repr(redact_text(text)), "kind": kind},
            )
        return text

    return AfterValidator(check)


LabelKey = Annotated[str, _label_text("key", key=True)]
LabelValue = Annotated[str, _label_text("value", key=False)]
AnnotationKey = Annotated[str, Field(min_length=1, max_length=317)]


class ServiceSpec(StrictModel):
    """One service's declared knobs. A knob left out is not managed: never reverted, never cleared."""

    name: ServiceName
    project: ProjectId | None = None
    region: Region | None = None
    container: Annotated[str, Field(min_length=1)] | None = None
    timeout: TimeoutSeconds | None = None
    scaling: ScalingSpec | None = None
    cpu_always_allocated: bool | None = None
    startup_cpu_boost: bool | None = None
    execution_environment: (
        Annotated[ExecutionEnvironment, BeforeValidator(_enum_value(ExecutionEnvironment))] | None
    ) = None
    env: dict[EnvName, EnvEntry] = Field(
        default_factory=dict, json_schema_extra={"propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$"}}
    )
    volume: VolumeSpec | None = None
    cloud_sql: CloudSqlSpec | None = None
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    annotations: dict[AnnotationKey, str] = Field(default_factory=dict)
    database: DatabaseSpec | None = None
    escalation: EscalationSpec | None = None
    out_of_band: Annotated[OutOfBandPolicy, BeforeValidator(_enum_value(OutOfBandPolicy))] = (
        OutOfBandPolicy.REVERT
    )
    acknowledge: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)

    @cached_property
    def key(self) -> ServiceKey:
        """project/region/name; computed once per (frozen) spec, since every pass asks for it often."""
        if self.project is None or self.region is None:
            raise ValueError(f"service {self.name} has no project or region; load it through desired.load")
        return ServiceKey(project=self.project, region=self.region, name=self.name)


class Defaults(StrictModel):
    """Values every service takes unless it gives its own."""

    project: ProjectId | None = None
    region: Region | None = None


class ControllerSettings(StrictModel):
    """How `run` behaves: its pass interval and whether it writes at all."""

    interval: duration_at_least(5, "a pass more often would only spend API quota") = 30  # type: ignore[valid-type]
    dry_run: bool = False


class DesiredState(StrictModel):
    """The whole document: an optional apiVersion, controller settings, defaults, and at least one service."""

    api_version: Literal["cloudrun-reconciler/v1alpha1"] | None = None
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    defaults: Defaults = Field(default_factory=Defaults)
    services: Annotated[list[ServiceSpec], Field(min_length=1)]
