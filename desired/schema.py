"""The schema of `desired-state.yaml`: strict, frozen pydantic models for a fleet of Cloud Run services.

Owns what may be declared and the range of each value. Keys are camelCase, as in Kubernetes and in
Cloud Run's own YAML; an unknown key is an error, never ignored. Checks that need more than one value
(defaults, duplicates) live in `desired.load`, which knows where each value sits in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from desired.duration import format_duration, parse_duration

__all__ = [
    "API_VERSION",
    "MAX_TIMEOUT_SECONDS",
    "Defaults",
    "DesiredState",
    "EnvValue",
    "PlainValue",
    "ScalingLevel",
    "ScalingSpec",
    "SecretRef",
    "ServiceKey",
    "ServiceSpec",
]

API_VERSION = "cloudrun-reconciler/v1alpha1"
MAX_TIMEOUT_SECONDS = 3600  # Cloud Run's limit for template.timeout
_INT32_MAX = 2**31 - 1
_SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?")
_PROJECT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Cloud Run sets these itself and rejects them in a container's env.
_RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})
_MAX_ENV_VALUE_BYTES = 32_768


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, alias_generator=to_camel)


def _pattern(regex: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise PydanticCustomError(
                "pattern", "{value!r} is not a valid {what}", {"value": value, "what": what}
            )
        return value

    return AfterValidator(check)


def _timeout(value: Any) -> int:
    try:
        seconds = parse_duration(value)
    except (ValueError, AttributeError) as error:
        raise PydanticCustomError("duration", str(error)) from None
    if not 1 <= seconds <= MAX_TIMEOUT_SECONDS:
        raise PydanticCustomError(
            "timeout_range",
            "must be between 1s and {limit} (Cloud Run's maximum), got {got}",
            {"limit": format_duration(MAX_TIMEOUT_SECONDS), "got": format_duration(seconds)},
        )
    return seconds


ServiceName = Annotated[str, _pattern(_SERVICE_NAME, "Cloud Run service name")]
ProjectId = Annotated[str, _pattern(_PROJECT_ID, "project ID")]
Region = Annotated[str, _pattern(_REGION, "region such as us-central1")]
TimeoutSeconds = Annotated[int, BeforeValidator(_timeout)]
InstanceCount = Annotated[int, Field(ge=0, le=_INT32_MAX)]


class ScalingLevel(StrEnum):
    """Where instance bounds live: service-wide `scaling`, or per revision in `template.scaling`."""

    SERVICE = "service"
    REVISION = "revision"


class ScalingSpec(_Strict):
    """Instance bounds and the level they apply at; the level is never guessed."""

    level: ScalingLevel
    min_instances: InstanceCount | None = None
    max_instances: Annotated[int, Field(ge=1, le=_INT32_MAX)] | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _level_from_text(cls, value: Any) -> Any:
        if isinstance(value, str) and value in ScalingLevel._value2member_map_:
            return ScalingLevel(value)
        raise PydanticCustomError(
            "scaling_level", "must be 'service' or 'revision', got {got}", {"got": repr(value)}
        )

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


class SecretRef(_Strict):
    """A Secret Manager reference; the controller never reads the secret's value."""

    secret: Annotated[str, Field(min_length=1)]
    version: Annotated[str, Field(min_length=1)] = "latest"

    def __str__(self) -> str:
        return f"secret:{self.secret}:{self.version}"


PlainValue = str
EnvValue = PlainValue | SecretRef


def _env_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "<plain>"
    if isinstance(value, dict | SecretRef):
        return "<secret-ref>"
    return None


def _env_value_size(value: EnvValue) -> EnvValue:
    if isinstance(value, str) and len(value.encode()) > _MAX_ENV_VALUE_BYTES:
        raise PydanticCustomError("env_size", "an env value is limited to 32768 bytes")
    return value


EnvEntry = Annotated[
    Annotated[PlainValue, Tag("<plain>")] | Annotated[SecretRef, Tag("<secret-ref>")],
    Discriminator(
        _env_kind,
        custom_error_type="env_value",
        custom_error_message="must be a string (quote numbers) or a secret reference {secret, version}",
    ),
    AfterValidator(_env_value_size),
]


def _env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise PydanticCustomError("env_name", "{name!r} is not a valid env var name", {"name": name})
    if name in _RESERVED_ENV:
        raise PydanticCustomError(
            "env_reserved", "{name} is set by Cloud Run and cannot be declared", {"name": name}
        )
    return name


EnvName = Annotated[str, AfterValidator(_env_name)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceKey:
    """The identity of a Cloud Run service: project, region and name."""

    project: str
    region: str
    name: str

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def resource_name(self) -> str:
        return f"{self.parent}/services/{self.name}"

    def __str__(self) -> str:
        return self.resource_name


class ServiceSpec(_Strict):
    """One service's declared knobs. A knob left out is not managed: never reverted, never cleared."""

    name: ServiceName
    project: ProjectId | None = None
    region: Region | None = None
    container: Annotated[str, Field(min_length=1)] | None = None
    timeout: TimeoutSeconds | None = None
    scaling: ScalingSpec | None = None
    cpu_always_allocated: bool | None = None
    env: dict[EnvName, EnvEntry] = Field(default_factory=dict)

    @property
    def key(self) -> ServiceKey:
        if self.project is None or self.region is None:
            raise ValueError(f"service {self.name} has no project or region; load it through desired.load")
        return ServiceKey(project=self.project, region=self.region, name=self.name)


class Defaults(_Strict):
    """Values every service takes unless it gives its own."""

    project: ProjectId | None = None
    region: Region | None = None


class DesiredState(_Strict):
    """The whole document: an optional apiVersion, defaults, and at least one service."""

    api_version: Literal["cloudrun-reconciler/v1alpha1"] | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    services: Annotated[list[ServiceSpec], Field(min_length=1)]
