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
    """`service`: the service-wide `scaling` (gcloud `--min`; `--max` is `gcloud beta` only), no new revision;
    `revision`: `template.scaling` (gcloud `--min-instances`/`--max-instances`)."""
    min_instances: Annotated[int, Field(ge=0, le=INT32_MAX)] | None = None
    """Instances kept running even without traffic; 1 or more avoids the cold starts that cancel work in
    flight."""
    max_instances: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = None
    """The most instances Cloud Run starts; SQLite on a Cloud Storage volume is safe only with 1 (CR201)."""

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
    """The volume's name in the revision template (`template.volumes[].name`)."""
    bucket: Annotated[str, pattern(_BUCKET, "Cloud Storage bucket name")]
    """The bucket mounted."""
    mount_path: Annotated[
        str, AfterValidator(_mount_path), Field(json_schema_extra={"pattern": "^/(?!(dev|proc|sys)(/|$)).+"})
    ]
    """Where the managed container sees the bucket; not /, /dev, /proc or /sys."""
    mount_options: (
        Annotated[
            list[Annotated[str, pattern(_MOUNT_OPTION, "gcsfuse option (a flag without its leading --)")]],
            AfterValidator(_mount_options),
        ]
        | None
    ) = None
    """gcsfuse flags without their leading `--`, compared as a set; SQLite needs
    `enable-streaming-writes=false` (CR203). Left out: not managed."""
    read_only: bool | None = None
    """Mount the bucket read-only. Left out: not managed."""


CloudSqlConnection = Annotated[
    str, pattern(_CLOUD_SQL_INSTANCE, "Cloud SQL connection name project:region:instance")
]


class CloudSqlSpec(StrictModel):
    """Cloud SQL instances mounted as the Cloud SQL Auth Proxy's sockets (`/cloudsql/PROJECT:REGION:NAME`).

    The escalation writes this for a service it moves to Cloud SQL; a service already on Cloud SQL may
    declare it too."""

    instances: Annotated[list[CloudSqlConnection], Field(min_length=1, max_length=10)]
    """Connection names `project:region:instance`, compared as a set."""
    volume: Annotated[
        str, pattern(_VOLUME_NAME, "volume name"), Field(json_schema_extra={"pattern": "^[a-z0-9-]+$"})
    ] = "cloudsql"
    """The Cloud SQL volume's name in the revision template."""
    mount_path: Annotated[
        str, AfterValidator(_mount_path), Field(json_schema_extra={"pattern": "^/(?!(dev|proc|sys)(/|$)).+"})
    ] = "/cloudsql"
    """Where the managed container finds the instances' sockets."""


class DatabaseSpec(StrictModel):
    """Which env var holds the SQLite URL, and whose syntax it follows."""

    env: EnvName = "DATABASE_URL"
    """The env var that holds the SQLite URL; it must be declared under `env` (CR105)."""
    dialect: Annotated[SqliteDialect, BeforeValidator(_enum_value(SqliteDialect))]
    """The driver whose URL syntax the checks read: `mattn` (go-sqlite3), `modernc` (modernc.org/sqlite)
    or `python` (sqlite3)."""


MetricType = Annotated[str, pattern(_METRIC_TYPE, "metric type such as logging.googleapis.com/user/NAME")]


class ContentionSignal(StrictModel):
    """`database is locked`: normal under load up to a point, so judged as a rate per request."""

    metric: MetricType
    """The log-based metric counting `database is locked`, such as
    `logging.googleapis.com/user/sqlite_contention`."""
    max_rate: Annotated[float, Field(gt=0, le=1)]
    """Breach when `database is locked` errors per request in a window exceed this share."""


class StorageErrorSignal(StrictModel):
    """`disk I/O error`, `database disk image is malformed`, `OutOfOrderError`: storage unfit for SQLite."""

    metric: MetricType
    """The log-based metric counting the storage error texts, such as
    `logging.googleapis.com/user/sqlite_storage_errors`."""
    max_count: Annotated[int, Field(ge=0)] = 0
    """Breach when a window holds more storage errors than this; 0: any one is a breach."""


class CloudSqlTarget(StrictModel):
    """Where the service goes when SQLite keeps failing."""

    instance: CloudSqlConnection
    """The Cloud SQL instance to move to, `project:region:instance`; mounted at /cloudsql."""
    database_url: EnvEntry
    """The URL the database env var takes on Cloud SQL; a secret reference `{secret, version}`, since it
    holds a password (CR302)."""


DAY = 86_400
LOOKBACK = 7 * DAY  # how far back one pass reads signal windows


class EscalationSpec(StrictModel):
    """When to move the service from SQLite to Cloud SQL: a breach held over consecutive windows."""

    window: duration_at_least(  # type: ignore[valid-type]
        60, "Cloud Monitoring's smallest alignment period", DAY, "a breach must be seen within a day"
    ) = 300
    """The length of one signal window; 60s to 24h."""
    consecutive_windows: Annotated[int, Field(ge=1, le=100)] = 3
    """How many windows in a row must breach before the service moves."""
    min_requests: Annotated[int, Field(ge=0)] = 20
    """A window with fewer requests than this is no evidence either way."""
    max_error_ratio: Annotated[float, Field(gt=0, le=1)] | None = None
    """A share of 5xx responses above this marks the service `Degraded`."""
    contention: ContentionSignal | None = None
    """The `database is locked` signal, judged as a rate."""
    storage_errors: StorageErrorSignal | None = None
    """The storage error signal, judged as a count."""
    cloud_sql: CloudSqlTarget | None = None
    """Where to move; required once any signal is declared (CR301)."""

    @model_validator(mode="after")
    def _some_signal(self) -> EscalationSpec:
        if self.contention is None and self.storage_errors is None:
            raise PydanticCustomError("no_signal", "name at least one signal: contention or storageErrors")
        if self.window * self.consecutive_windows > LOOKBACK:
            raise PydanticCustomError(
                "lookback_range",
                "window × consecutiveWindows must be at most 7d: each pass reads all of them back",
            )
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
    """The Cloud Run service's name."""
    project: ProjectId | None = None
    """Its project; default: `defaults.project`."""
    region: Region | None = None
    """Its region; default: `defaults.region`."""
    container: Annotated[str, Field(min_length=1)] | None = None
    """The managed container's name; default: the only container, else the ingress one; `#N`: the Nth
    unnamed one."""
    timeout: TimeoutSeconds | None = None
    """The request timeout (`template.timeout`); Cloud Run's default is 300s, its maximum 3600s."""
    scaling: ScalingSpec | None = None
    """Instance bounds."""
    cpu_always_allocated: bool | None = None
    """true: CPU stays allocated between requests (`resources.cpu_idle = false`)."""
    startup_cpu_boost: bool | None = None
    """Extra CPU while an instance starts (`resources.startup_cpu_boost`)."""
    execution_environment: (
        Annotated[ExecutionEnvironment, BeforeValidator(_enum_value(ExecutionEnvironment))] | None
    ) = None
    """The execution environment; gen2 for Cloud Storage volumes (CR204)."""
    env: dict[EnvName, EnvEntry] = Field(
        default_factory=dict, json_schema_extra={"propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$"}}
    )
    """Env vars by name, each a string or a secret reference `{secret, version}`; others are left alone."""
    volume: VolumeSpec | None = None
    """A Cloud Storage volume mounted into the managed container."""
    cloud_sql: CloudSqlSpec | None = None
    """Cloud SQL instances mounted into the managed container."""
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    """Labels managed key by key; others are left alone."""
    annotations: dict[AnnotationKey, str] = Field(default_factory=dict)
    """Annotations managed key by key; none in a namespace Cloud Run reserves (CR401)."""
    database: DatabaseSpec | None = None
    """Where the SQLite URL is, for the checks on it."""
    escalation: EscalationSpec | None = None
    """When and where to move the service from SQLite to Cloud SQL."""
    out_of_band: Annotated[OutOfBandPolicy, BeforeValidator(_enum_value(OutOfBandPolicy))] = (
        OutOfBandPolicy.REVERT
    )
    """When someone else changed an owned field: `revert` it, `report` it and keep their value, or
    `stop` writing the service until a person decides."""
    acknowledge: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    """Policy codes this service accepts, each with the reason; an acknowledged error no longer blocks."""

    @cached_property
    def key(self) -> ServiceKey:
        """project/region/name; computed once per (frozen) spec, since every pass asks for it often."""
        if self.project is None or self.region is None:
            raise ValueError(f"service {self.name} has no project or region; load it through desired.load")
        return ServiceKey(project=self.project, region=self.region, name=self.name)


class Defaults(StrictModel):
    """Values every service takes unless it gives its own."""

    project: ProjectId | None = None
    """The project of services that name none."""
    region: Region | None = None
    """The region of services that name none."""


class ControllerSettings(StrictModel):
    """How `run` behaves: its pass interval and whether it writes at all."""

    interval: duration_at_least(5, "a pass more often would only spend API quota") = 30  # type: ignore[valid-type]
    """Time between the passes of `run`; at least 5s."""
    dry_run: bool = False
    """true: `run` plans every pass and writes nothing."""


class DesiredState(StrictModel):
    """The whole document: an optional apiVersion, controller settings, defaults, and at least one service."""

    api_version: Literal["cloudrun-reconciler/v1alpha1"] | None = None
    """The file format; optional."""
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    """How the long-running `run` behaves."""
    defaults: Defaults = Field(default_factory=Defaults)
    """Project and region for services that name none."""
    services: Annotated[list[ServiceSpec], Field(min_length=1)]
    """The services to manage, at least one."""
