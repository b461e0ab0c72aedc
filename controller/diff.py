"""The field-by-field difference between one declared service and its live state. Pure.

Owns what "drift" means: only knobs the spec declares are compared, and they are compared by meaning
(seconds, not spellings; env vars, labels and volumes by name, not position; mount options as a set;
server defaults already filled in by the observer). Returns typed `FieldChange`s in one fixed order, so a
plan prints the same way every time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from controller.model import CloudSqlVolume, GcsVolume, ObservedContainer, ObservedService, OtherVolume
from desired import ScalingLevel, SecretRef, ServiceSpec

__all__ = [
    "FieldChange",
    "ManagedField",
    "TargetError",
    "Value",
    "canonical",
    "diff_service",
    "fingerprint",
    "manages_template",
    "owned_fields",
    "select_container",
]

Value = int | float | bool | str | SecretRef | GcsVolume | CloudSqlVolume | None


class ManagedField(IntEnum):
    """The knobs the controller can own; the value order is the order a plan prints them in."""

    SERVICE_MIN_INSTANCES = 1
    SERVICE_MAX_INSTANCES = 2
    LABEL = 3
    ANNOTATION = 4
    TIMEOUT = 5
    REVISION_MIN_INSTANCES = 6
    REVISION_MAX_INSTANCES = 7
    EXECUTION_ENVIRONMENT = 8
    VOLUME = 9
    CLOUD_SQL_VOLUME = 10
    CPU_IDLE = 11
    STARTUP_CPU_BOOST = 12
    VOLUME_MOUNT = 13
    ENV = 14

    @property
    def creates_revision(self) -> bool:
        """Any change under `template` creates a revision; service-level fields do not."""
        return _PATHS[self].startswith("template.")

    @property
    def mask_path(self) -> str:
        """The `update_mask` path. A mask cannot index into a list or a map: those go back whole, as read."""
        return _PATHS[self].split("[", 1)[0]


_PATHS = {
    ManagedField.SERVICE_MIN_INSTANCES: "scaling.min_instance_count",
    ManagedField.SERVICE_MAX_INSTANCES: "scaling.max_instance_count",
    ManagedField.LABEL: "labels[{key}]",
    ManagedField.ANNOTATION: "annotations[{key}]",
    ManagedField.TIMEOUT: "template.timeout",
    ManagedField.REVISION_MIN_INSTANCES: "template.scaling.min_instance_count",
    ManagedField.REVISION_MAX_INSTANCES: "template.scaling.max_instance_count",
    ManagedField.EXECUTION_ENVIRONMENT: "template.execution_environment",
    ManagedField.VOLUME: "template.volumes[{key}]",
    ManagedField.CLOUD_SQL_VOLUME: "template.volumes[{key}]",
    ManagedField.CPU_IDLE: "template.containers[{container}].resources.cpu_idle",
    ManagedField.STARTUP_CPU_BOOST: "template.containers[{container}].resources.startup_cpu_boost",
    ManagedField.VOLUME_MOUNT: "template.containers[{container}].volume_mounts[{key}]",
    ManagedField.ENV: "template.containers[{container}].env[{key}]",
}


@dataclass(frozen=True)
class FieldChange:
    """One owned field that differs: where it is, what it is, what it should be."""

    field: ManagedField
    old: Value
    new: Value
    container_index: int | None = None
    container_label: str = ""
    key: str = ""  # the env var, volume, label or annotation name

    @property
    def path(self) -> str:
        return _PATHS[self.field].format(container=self.container_label, key=self.key)

    @property
    def sort_key(self) -> tuple[int, str, str]:
        return (self.field.value, self.container_label, self.key)


class TargetError(ValueError):
    """The spec cannot be matched to the live service (e.g. the named container does not exist)."""


def select_container(spec: ServiceSpec, containers: tuple[ObservedContainer, ...]) -> ObservedContainer:
    """The container the spec manages: the one it names (`#N` for an unnamed one at position N), else the
    only one, else the ingress one."""
    if spec.container is not None:
        for container in containers:
            if spec.container in (container.name, container.label):
                return container
        names = ", ".join(c.label for c in containers) or "none"
        raise TargetError(f"container {spec.container!r} not found (containers: {names})")
    if len(containers) == 1:
        return containers[0]
    ingress = [c for c in containers if c.serves_ingress]
    if len(ingress) == 1:
        return ingress[0]
    raise TargetError(
        f"the service has {len(containers)} containers and {len(ingress)} serve ingress: "
        "name the one to manage with `container:`"
    )


def diff_service(spec: ServiceSpec, observed: ObservedService) -> tuple[FieldChange, ...]:
    """Every declared knob whose live meaning differs from the declared one, in print order."""
    project = observed.key.project
    return tuple(
        f
        for f in owned_fields(spec, observed)
        if not _identical(f.old, f.new) and canonical(f, f.old, project) != canonical(f, f.new, project)
    )


def _identical(old: Value, new: Value) -> bool:
    """Equal values of one type, whose canonical texts are then equal too: the common case, decided
    without building them. (Across types `True == 1`, yet they mean different things.)"""
    return type(old) is type(new) and old == new


def owned_fields(spec: ServiceSpec, observed: ObservedService) -> tuple[FieldChange, ...]:
    """Every field the spec declares, as (live `old`, declared `new`), whether or not they differ."""
    fields = [
        *_scaling_fields(spec, observed),
        *_metadata_fields(spec, observed),
        *_template_fields(spec, observed),
    ]
    if _manages_container(spec):
        fields.extend(_container_fields(spec, select_container(spec, observed.containers)))
    return tuple(sorted(fields, key=lambda field: field.sort_key))


def canonical(change: FieldChange, value: Value, project: str) -> str:
    """A value by meaning, as text: two values mean the same exactly when these are equal. Also what the
    last-applied record stores (hashed), so a value written and read back compares equal."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return repr(_whole(value))
    if isinstance(value, SecretRef):
        return f"secret:{_secret_id(value.secret, project)}:{value.version}"
    if isinstance(value, GcsVolume):
        return f"gs://{value.bucket}|{value.read_only}|{','.join(sorted(value.mount_options))}"
    if isinstance(value, CloudSqlVolume):
        return f"cloudsql:{','.join(sorted(value.instances))}"
    if change.field is ManagedField.ENV:
        return repr(_url_meaning(value) or value)
    return repr(value)


def manages_template(spec: ServiceSpec) -> bool:
    """Whether the spec owns anything under `template`, which only a serving revision makes real."""
    revision_scaling = spec.scaling is not None and spec.scaling.level is ScalingLevel.REVISION
    declared = (spec.timeout, spec.execution_environment, spec.volume, spec.cloud_sql)
    return revision_scaling or any(value is not None for value in declared) or _manages_container(spec)


def _manages_container(spec: ServiceSpec) -> bool:
    return bool(
        spec.cpu_always_allocated is not None
        or spec.startup_cpu_boost is not None
        or spec.env
        or spec.volume
        or spec.cloud_sql
    )


def fingerprint(change: FieldChange, value: Value, project: str) -> str:
    """A short hash of a value's meaning: what the last-applied record keeps instead of the value itself."""
    return hashlib.sha256(canonical(change, value, project).encode()).hexdigest()[:16]


def _scaling_fields(spec: ServiceSpec, observed: ObservedService) -> list[FieldChange]:
    scaling = spec.scaling
    if scaling is None:
        return []
    if scaling.level is ScalingLevel.SERVICE:
        low_field, high_field = ManagedField.SERVICE_MIN_INSTANCES, ManagedField.SERVICE_MAX_INSTANCES
        low, high = observed.service_min_instances, observed.service_max_instances
    else:
        low_field, high_field = ManagedField.REVISION_MIN_INSTANCES, ManagedField.REVISION_MAX_INSTANCES
        low, high = observed.revision_min_instances, observed.revision_max_instances
    fields = []
    if scaling.min_instances is not None:
        fields.append(FieldChange(low_field, low, scaling.min_instances))
    if scaling.max_instances is not None:
        fields.append(FieldChange(high_field, high, scaling.max_instances))
    return fields


def _metadata_fields(spec: ServiceSpec, observed: ObservedService) -> list[FieldChange]:
    fields: list[FieldChange] = []
    for field, wanted, live in (
        (ManagedField.LABEL, spec.labels, dict(observed.labels)),
        (ManagedField.ANNOTATION, spec.annotations, dict(observed.annotations)),
    ):
        fields.extend(FieldChange(field, live.get(k), v, key=k) for k, v in sorted(wanted.items()))
    return fields


def _template_fields(spec: ServiceSpec, observed: ObservedService) -> list[FieldChange]:
    fields = []
    if spec.timeout is not None:
        fields.append(FieldChange(ManagedField.TIMEOUT, _whole(observed.timeout_seconds), spec.timeout))
    if spec.execution_environment is not None:
        live_environment = observed.execution_environment or None
        wanted_environment = spec.execution_environment.value
        fields.append(FieldChange(ManagedField.EXECUTION_ENVIRONMENT, live_environment, wanted_environment))
    if spec.volume is not None:
        live = observed.volume(spec.volume.name)
        if isinstance(live, OtherVolume | CloudSqlVolume):
            name = spec.volume.name
            raise TargetError(f"volume {name!r} exists as {live}, not Cloud Storage: declare another name")
        fields.append(
            FieldChange(ManagedField.VOLUME, live, _wanted_volume(spec, live), key=spec.volume.name)
        )
    if spec.cloud_sql is not None:
        name = spec.cloud_sql.volume
        live_sql = observed.volume(name)
        if live_sql is not None and not isinstance(live_sql, CloudSqlVolume):
            raise TargetError(f"volume {name!r} exists as {live_sql}, not Cloud SQL: declare another name")
        wanted = CloudSqlVolume(frozenset(spec.cloud_sql.instances))
        fields.append(FieldChange(ManagedField.CLOUD_SQL_VOLUME, live_sql, wanted, key=name))
    return fields


def _wanted_volume(spec: ServiceSpec, live: GcsVolume | None) -> GcsVolume:
    """The declared volume; `readOnly` and `mountOptions` left out of the file keep their live values."""
    assert spec.volume is not None
    read_only = spec.volume.read_only
    options = spec.volume.mount_options
    return GcsVolume(
        spec.volume.bucket,
        read_only if read_only is not None else (live.read_only if live else False),
        frozenset(options) if options is not None else (live.mount_options if live else frozenset()),
    )


def _whole(seconds: float) -> int | float:
    return int(seconds) if float(seconds).is_integer() else seconds


def _container_fields(spec: ServiceSpec, container: ObservedContainer) -> list[FieldChange]:
    def field(kind: ManagedField, old: Value, new: Value, key: str = "") -> FieldChange:
        return FieldChange(kind, old, new, container.index, container.label, key)

    fields = []
    if spec.cpu_always_allocated is not None:
        fields.append(field(ManagedField.CPU_IDLE, container.cpu_idle, not spec.cpu_always_allocated))
    if spec.startup_cpu_boost is not None:
        fields.append(
            field(ManagedField.STARTUP_CPU_BOOST, container.startup_cpu_boost, spec.startup_cpu_boost)
        )
    if spec.volume is not None:
        taken = [name for name, path in container.volume_mounts if path == spec.volume.mount_path]
        if taken and spec.volume.name not in taken:
            raise TargetError(
                f"{spec.volume.mount_path} in container {container.label} is where volume {taken[0]!r} is "
                f"mounted: mounting {spec.volume.name!r} there too would shadow it"
            )
        live_path = container.mount_path(spec.volume.name)
        fields.append(field(ManagedField.VOLUME_MOUNT, live_path, spec.volume.mount_path, spec.volume.name))
    if spec.cloud_sql is not None:
        name, path = spec.cloud_sql.volume, spec.cloud_sql.mount_path
        taken = [volume for volume, mounted in container.volume_mounts if mounted == path]
        if taken and name not in taken:
            raise TargetError(
                f"{path} in container {container.label} is where volume {taken[0]!r} is mounted: "
                f"mounting {name!r} there too would shadow it"
            )
        fields.append(field(ManagedField.VOLUME_MOUNT, container.mount_path(name), path, name))
    fields.extend(field(ManagedField.ENV, container.env_value(n), v, n) for n, v in sorted(spec.env.items()))
    return fields


def _url_meaning(value: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """A URL's base and its query parameters by name, so `?a=1&b=2` equals `?b=2&a=1`. The sort is stable:
    repeats of one name keep their order, which drivers such as go-sqlite3 (first value wins) depend on."""
    base, mark, query = value.partition("?")
    if not mark or ("://" not in base and not base.startswith(("file:", "/"))):
        return None
    params = [tuple(part.split("=", 1)) if "=" in part else (part, "") for part in query.split("&") if part]
    return base, tuple(sorted(params, key=lambda pair: pair[0]))  # type: ignore[arg-type]


def _secret_id(secret: str, project: str) -> str:
    """`projects/P/secrets/db-url` is `db-url` when P is the service's own project, and only then."""
    parts = secret.split("/")
    if len(parts) == 4 and parts[0] == "projects" and parts[2] == "secrets" and parts[1] == project:
        return parts[3]
    return secret
