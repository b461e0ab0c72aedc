"""The value types `desired-state.yaml` is made of: names, durations, env values, secret references.

Owns the range of each scalar and the wording of its error, so every model in `desired.schema` speaks the
same way about a bad project ID or a bad duration. Pure pydantic; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from desired.duration import format_duration, parse_duration

__all__ = [
    "INT32_MAX",
    "MAX_TIMEOUT_SECONDS",
    "EnvEntry",
    "EnvName",
    "EnvValue",
    "PlainValue",
    "ProjectId",
    "Region",
    "SecretRef",
    "ServiceKey",
    "ServiceName",
    "StrictModel",
    "TimeoutSeconds",
    "duration_at_least",
]

MAX_TIMEOUT_SECONDS = 3600  # Cloud Run's limit for template.timeout
INT32_MAX = 2**31 - 1
_SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?")
_PROJECT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Cloud Run sets these itself and rejects them in a container's env.
_RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})
_MAX_ENV_VALUE_BYTES = 32_768


class StrictModel(BaseModel):
    """Every model of the file: camelCase keys, unknown keys refused, no coercion, frozen."""

    # Field docstrings become the JSON Schema's descriptions, and so the README's field reference.
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, alias_generator=to_camel, use_attribute_docstrings=True
    )


def pattern(regex: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise PydanticCustomError(
                "pattern", "{value} is not a valid {what}", {"value": repr(value), "what": what}
            )
        return value

    return AfterValidator(check)


def _duration(value: Any) -> int:
    try:
        return parse_duration(value)
    except (ValueError, AttributeError) as error:
        raise PydanticCustomError("duration", str(error)) from None


def _timeout(value: Any) -> int:
    seconds = _duration(value)
    if not 1 <= seconds <= MAX_TIMEOUT_SECONDS:
        raise PydanticCustomError(
            "timeout_range",
            "must be between 1s and {limit} (Cloud Run's maximum), got {got}",
            {"limit": format_duration(MAX_TIMEOUT_SECONDS), "got": format_duration(seconds)},
        )
    return seconds


def _schema_pattern(regex: re.Pattern[str]) -> Any:
    """The same rule for editors: JSON Schema sees no validator functions, only this."""
    return Field(json_schema_extra={"pattern": f"^(?:{regex.pattern})$"})


ServiceName = Annotated[str, pattern(_SERVICE_NAME, "Cloud Run service name"), _schema_pattern(_SERVICE_NAME)]
ProjectId = Annotated[str, pattern(_PROJECT_ID, "project ID"), _schema_pattern(_PROJECT_ID)]
Region = Annotated[str, pattern(_REGION, "region such as us-central1"), _schema_pattern(_REGION)]
_DURATION_SCHEMA = {
    "anyOf": [
        {
            "type": "string",
            "pattern": "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$|^[0-9]+$",
            "examples": ["3600s", "60m", "1h"],
        },
        {"type": "integer", "minimum": 0},
    ],
    "description": "a duration: 3600s, 60m, 1h, 1h30m, or whole seconds",
}
_TIMEOUT_SCHEMA = {
    "anyOf": [
        _DURATION_SCHEMA["anyOf"][0],
        {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_SECONDS},
    ],
    "description": "the request timeout: 1s to 3600s, written 3600s, 60m, 1h or whole seconds",
}
TimeoutSeconds = Annotated[int, BeforeValidator(_timeout), WithJsonSchema(_TIMEOUT_SCHEMA)]


def duration_at_least(minimum: int, why: str, maximum: int | None = None, maximum_why: str = "") -> Any:
    """A duration field of at least `minimum` seconds (and at most `maximum`); `why` and `maximum_why`
    say whose limits those are."""

    def check(value: Any) -> int:
        seconds = _duration(value)
        if seconds < minimum:
            raise PydanticCustomError(
                "duration_range",
                "must be at least {minimum} ({why}), got {got}",
                {"minimum": format_duration(minimum), "why": why, "got": format_duration(seconds)},
            )
        if maximum is not None and seconds > maximum:
            raise PydanticCustomError(
                "duration_range",
                "must be at most {maximum} ({why}), got {got}",
                {"maximum": format_duration(maximum), "why": maximum_why, "got": format_duration(seconds)},
            )
        return seconds

    return Annotated[int, BeforeValidator(check), WithJsonSchema(_DURATION_SCHEMA)]


# A name in this project, or `projects/P/secrets/S` (P a project id, number, or `example.com:id`).
_SECRET_NAME = re.compile(r"^(projects/[a-z0-9.:-]{1,100}/secrets/)?[A-Za-z0-9_-]{1,255}$")
# `latest`, a version number, or a version alias (letters, digits, - and _).
_SECRET_VERSION = re.compile(r"^[A-Za-z0-9_-]{1,63}$")


class SecretRef(StrictModel):
    """A Secret Manager reference; the controller never reads the secret's value."""

    secret: Annotated[
        str,
        pattern(_SECRET_NAME, "secret name (letters, digits, - and _; or projects/P/secrets/S)"),
        Field(json_schema_extra={"pattern": _SECRET_NAME.pattern}),
    ]
    """The secret's name in the service's project, or `projects/P/secrets/S` for another project's."""
    version: Annotated[
        str,
        pattern(_SECRET_VERSION, "secret version (latest, a number or an alias)"),
        Field(json_schema_extra={"pattern": _SECRET_VERSION.pattern}),
    ] = "latest"
    """The secret version: `latest`, a number, or an alias; pin one to roll out a new value deliberately."""

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
        raise PydanticCustomError("env_name", "{name} is not a valid env var name", {"name": repr(name)})
    if name in _RESERVED_ENV:
        raise PydanticCustomError(
            "env_reserved", "{name} is set by Cloud Run and cannot be declared", {"name": name}
        )
    return name


EnvName = Annotated[str, AfterValidator(_env_name), _schema_pattern(_ENV_NAME)]


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
