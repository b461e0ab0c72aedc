"""Translation between Cloud Run's v2 `Service` protobuf and the core's plain values, both ways.

Owns reading a service into an `ObservedService` (with Cloud Run's defaults filled in where it left a
field out) and writing `FieldChange`s into a copy of the service as read, with the `update_mask` paths
they touch. The other half of the adapter, `controller.cloudrun`, owns the client and its errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.cloud import run_v2

from controller import __version__
from controller.diff import FieldChange, ManagedField
from controller.errors import ReconcilerError
from controller.model import (
    APPLIED_ANNOTATION,
    CLIENT_NAME,
    DEFAULT_REVISION_MAX_INSTANCES,
    DEFAULT_TIMEOUT_SECONDS,
    CloudSqlVolume,
    GcsVolume,
    LiveService,
    ObservedContainer,
    ObservedService,
    OtherVolume,
)
from desired import EnvValue, SecretRef, ServiceKey
from desired.redaction import redact_text

__all__ = ["Remembered", "live_service", "observe", "remembered_service", "updated_service"]

_FAILED = run_v2.Condition.State.CONDITION_FAILED
_ENVIRONMENTS = {
    run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN1: "gen1",
    run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2: "gen2",
}


def live_service(service: run_v2.Service | Any) -> LiveService:
    """The observed view and the raw protobuf it was read from (proto-plus `Service` or its protobuf)."""
    pb = _raw(service)
    return LiveService(_observe(pb), pb)


# What a listing remembers of each service it read: the message's bytes and the view made from them.
Remembered = dict[str, tuple[bytes, ObservedService]]


def remembered_service(pb: Any, before: Remembered, now: Remembered) -> LiveService:
    """`live_service` for a listed protobuf, translated again only when its message is not byte for byte
    the one `before` holds under its name (a steady fleet is listed whole every pass, and mostly
    unchanged); what was read goes into `now`. The view is a pure function of the message, so a kept one
    is the one translating would give."""
    data = pb.SerializeToString(deterministic=True)
    last = before.get(pb.name)
    observed = last[1] if last is not None and last[0] == data else _observe(pb)
    now[pb.name] = (data, observed)
    return LiveService(observed, pb)


def _raw(service: run_v2.Service | Any) -> Any:
    return run_v2.Service.pb(service) if isinstance(service, run_v2.Service) else service


def observe(service: run_v2.Service | Any) -> ObservedService:
    """The managed view of a service, with Cloud Run's defaults filled in where it left a field out."""
    return _observe(_raw(service))


def _observe(pb: Any) -> ObservedService:
    _, project, _, region, _, name = pb.name.split("/")
    template = pb.template
    timeout = (
        template.timeout.seconds + template.timeout.nanos / 1e9 if template.HasField("timeout") else None
    )
    return ObservedService(
        key=ServiceKey(project=project, region=region, name=name),
        etag=pb.etag,
        generation=pb.generation,
        timeout_seconds=DEFAULT_TIMEOUT_SECONDS if timeout is None else timeout,
        service_min_instances=pb.scaling.min_instance_count,
        service_max_instances=pb.scaling.max_instance_count or None,
        revision_min_instances=template.scaling.min_instance_count,
        revision_max_instances=template.scaling.max_instance_count or DEFAULT_REVISION_MAX_INSTANCES,
        containers=tuple(_container(index, c) for index, c in enumerate(template.containers)),
        execution_environment=_ENVIRONMENTS.get(template.execution_environment, ""),
        volumes=tuple((volume.name, _gcs_volume(volume)) for volume in template.volumes),
        latest_ready_revision=pb.latest_ready_revision.rsplit("/", 1)[-1],
        failure=redact_text(pb.terminal_condition.message) if pb.terminal_condition.state == _FAILED else "",
        traffic=tuple((status.revision.rsplit("/", 1)[-1], status.percent) for status in pb.traffic_statuses),
        last_modifier=pb.last_modifier,
        client=pb.client,
        labels=tuple(sorted(pb.labels.items())),
        annotations=tuple(sorted(pb.annotations.items())),
        applied=_applied(pb.annotations.get(APPLIED_ANNOTATION, "")),
    )


def _applied(text: str) -> tuple[tuple[str, str], ...]:
    """The record this controller wrote; anything unreadable (edited by hand) counts as no record."""
    try:
        fields = json.loads(text).get("fields", {}) if text else {}
    except (ValueError, AttributeError):
        return ()
    if not isinstance(fields, dict):
        return ()
    return tuple(sorted((str(path), str(print_)) for path, print_ in fields.items()))


def _gcs_volume(volume: Any) -> GcsVolume | CloudSqlVolume | OtherVolume:
    source = volume.WhichOneof("volume_type")
    if source == "cloud_sql_instance":
        return CloudSqlVolume(frozenset(volume.cloud_sql_instance.instances))
    if source != "gcs":
        return OtherVolume(source or "unknown")
    gcs = volume.gcs
    return GcsVolume(gcs.bucket, gcs.read_only, frozenset(gcs.mount_options))


def _container(index: int, container: Any) -> ObservedContainer:
    return ObservedContainer(
        index=index,
        name=container.name,
        image=container.image,
        serves_ingress=len(container.ports) > 0,
        cpu_idle=container.resources.cpu_idle if container.HasField("resources") else True,
        env=tuple((env.name, _env_value(env)) for env in container.env),
        startup_cpu_boost=container.resources.startup_cpu_boost,
        volume_mounts=tuple((mount.name, mount.mount_path) for mount in container.volume_mounts),
    )


def _env_value(env: Any) -> EnvValue:
    if env.HasField("value_source"):
        ref = env.value_source.secret_key_ref
        # What the service holds, as it holds it: the desired file's rules are not the API's to obey.
        return SecretRef.model_construct(secret=ref.secret, version=ref.version or "latest")
    return str(env.value)


def updated_service(
    raw: run_v2.Service | Any, changes: Iterable[FieldChange]
) -> tuple[run_v2.Service, list[str]]:
    """A copy of `raw` with `changes` written in, and the mask paths they touch, in a stable order."""
    read = _raw(raw)
    pb = type(read)()
    pb.CopyFrom(read)
    # Re-sending the revision name read back with a changed template is a 409 from Cloud Run.
    pb.template.revision = ""
    pb.client, pb.client_version = CLIENT_NAME, __version__
    paths: list[str] = []
    for change in changes:
        _write(pb, change)
        if change.field.mask_path not in paths:
            paths.append(change.field.mask_path)
    if any(change.field.creates_revision for change in changes):
        # The name must be cleared on the server too: under a mask without it, Cloud Run keeps the stored
        # name and answers 409 "Revision named … with different configuration already exists".
        paths.append("template.revision")
    return run_v2.Service.wrap(pb), paths


def _write(pb: Any, change: FieldChange) -> None:
    field, new = change.field, change.new
    if field is ManagedField.TIMEOUT:
        assert isinstance(new, int | float)
        pb.template.timeout.FromNanoseconds(int(new * 1_000_000_000))
    elif field is ManagedField.SERVICE_MIN_INSTANCES:
        pb.scaling.min_instance_count = _count(new)
    elif field is ManagedField.SERVICE_MAX_INSTANCES:
        pb.scaling.max_instance_count = _count(new)
    elif field is ManagedField.REVISION_MIN_INSTANCES:
        pb.template.scaling.min_instance_count = _count(new)
    elif field is ManagedField.REVISION_MAX_INSTANCES:
        pb.template.scaling.max_instance_count = _count(new)
    elif field is ManagedField.CPU_IDLE:
        _container_pb(pb, change).resources.cpu_idle = bool(new)
    elif field is ManagedField.STARTUP_CPU_BOOST:
        _container_pb(pb, change).resources.startup_cpu_boost = bool(new)
    elif field is ManagedField.ENV:
        _write_env(_container_pb(pb, change), change.key, new)
    else:
        _write_other(pb, change)


def _write_other(pb: Any, change: FieldChange) -> None:
    field, new = change.field, change.new
    if field is ManagedField.EXECUTION_ENVIRONMENT:
        pb.template.execution_environment = {value: key for key, value in _ENVIRONMENTS.items()}[str(new)]
    elif field is ManagedField.LABEL:
        pb.labels[change.key] = str(new)
    elif field is ManagedField.ANNOTATION:
        if new is None:
            pb.annotations.pop(change.key, None)
        else:
            pb.annotations[change.key] = str(new)
    elif field is ManagedField.CLOUD_SQL_VOLUME:
        _write_cloud_sql(pb, change.key, new)
    elif field is ManagedField.VOLUME:
        assert isinstance(new, GcsVolume)
        volume = next((v for v in pb.template.volumes if v.name == change.key), None)
        volume = volume if volume is not None else pb.template.volumes.add(name=change.key)
        volume.gcs.bucket, volume.gcs.read_only = (
            new.bucket,
            new.read_only,
        )  # setting gcs clears other sources
        # A set by meaning: keep the order already there, append what is new, drop what is not wanted.
        existing = list(volume.gcs.mount_options)
        kept = [option for option in existing if option in new.mount_options]
        del volume.gcs.mount_options[:]
        volume.gcs.mount_options.extend(kept + sorted(new.mount_options - set(existing)))
    elif field is ManagedField.VOLUME_MOUNT:
        container = _container_pb(pb, change)
        mount = next((m for m in container.volume_mounts if m.name == change.key), None)
        if new is None:
            if mount is not None:
                container.volume_mounts.remove(mount)
            return
        mount = mount if mount is not None else container.volume_mounts.add(name=change.key)
        mount.mount_path = str(new)


def _write_cloud_sql(pb: Any, name: str, new: Any) -> None:
    """Attach, change or (with `new` None) remove a Cloud SQL volume; its instances are a set."""
    volume = next((v for v in pb.template.volumes if v.name == name), None)
    if new is None:
        if volume is not None:
            pb.template.volumes.remove(volume)
        return
    assert isinstance(new, CloudSqlVolume)
    volume = volume if volume is not None else pb.template.volumes.add(name=name)
    existing = list(volume.cloud_sql_instance.instances)  # setting it clears any other source
    kept = [instance for instance in existing if instance in new.instances]
    del volume.cloud_sql_instance.instances[:]
    volume.cloud_sql_instance.instances.extend(kept + sorted(new.instances - set(existing)))


def _count(value: object) -> int:
    """An instance bound as the API stores it: unset is 0."""
    if value is None:
        return 0
    if not isinstance(value, int):
        raise ReconcilerError(f"an instance count must be an integer, got {value!r}")
    return value


def _container_pb(pb: Any, change: FieldChange) -> Any:
    index = change.container_index
    containers = pb.template.containers
    if (
        index is None
        or index >= len(containers)
        or (containers[index].name or f"#{index}") != change.container_label
    ):
        raise ReconcilerError(f"container {change.container_label} is not where it was planned")
    return containers[index]


def _write_env(container: Any, name: str, value: Any) -> None:
    entries = [env for env in container.env if env.name == name] or [container.env.add(name=name)]
    for env in entries:
        if isinstance(value, SecretRef):
            env.value_source.secret_key_ref.secret = value.secret
            env.value_source.secret_key_ref.version = value.version
        else:
            env.value = str(value)
