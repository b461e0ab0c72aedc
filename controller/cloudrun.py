"""The adapter over the Cloud Run Admin API v2: the only module here that speaks `google.cloud.run_v2`.

Owns building the real `ServicesClient` (an insecure channel to `CLOUD_RUN_EMULATOR_HOST` when set,
Application Default Credentials and the real endpoint otherwise), reading services into
`ObservedService`s, writing `FieldChange`s back as one read-modify-write update (the etag read, an
`update_mask` of the changed owned paths, `template.revision` cleared), and translating Google's
exceptions into `controller.errors` at this boundary.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core.future import polling
from google.auth import exceptions as auth_exceptions
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport
from google.protobuf import field_mask_pb2

from controller import __version__
from controller.diff import FieldChange, ManagedField
from controller.errors import (
    ConflictError,
    NotFoundError,
    PermanentError,
    ReconcilerError,
    RolloutError,
    TransientError,
)
from controller.model import (
    CLIENT_NAME,
    DEFAULT_REVISION_MAX_INSTANCES,
    DEFAULT_TIMEOUT_SECONDS,
    GcsVolume,
    LiveService,
    ObservedContainer,
    ObservedService,
    OtherVolume,
)
from desired import EnvValue, SecretRef, ServiceKey
from desired.redaction import redact_text

__all__ = ["CLIENT_NAME", "EMULATOR_HOST_ENV", "CloudRunServices", "observe", "services_client"]

EMULATOR_HOST_ENV = "CLOUD_RUN_EMULATOR_HOST"
_HOST_PORT = re.compile(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")

_CONFLICT = (gexc.Aborted, gexc.FailedPrecondition)
_FAILED = run_v2.Condition.State.CONDITION_FAILED
_ENVIRONMENTS = {
    run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN1: "gen1",
    run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2: "gen2",
}
_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.ResourceExhausted,
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.Cancelled,
    gexc.Unknown,
)


def services_client(emulator_host: str | None = None, connect_timeout: float = 2.0) -> run_v2.ServicesClient:
    """The real client: to the emulator over plaintext when a host is given or set, else to Google."""
    host = emulator_host if emulator_host is not None else os.environ.get(EMULATOR_HOST_ENV, "")
    if host:
        if not _HOST_PORT.fullmatch(host):
            raise PermanentError(
                f"{EMULATOR_HOST_ENV} must be host:port such as 127.0.0.1:8085, got {host!r}"
            )
        _probe(host, connect_timeout)
        return run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=grpc.insecure_channel(host)))
    try:
        return run_v2.ServicesClient()
    except auth_exceptions.DefaultCredentialsError as error:
        raise PermanentError(
            "no Google credentials: run `gcloud auth application-default login`, or set "
            f"{EMULATOR_HOST_ENV}=host:port to use a local emulator ({error})"
        ) from None


def _probe(host: str, timeout: float) -> None:
    """Wait up to `timeout` for the emulator to listen (one started in the background a moment ago), then
    fail by name: the gRPC client would otherwise retry for 10 s and report only a deadline."""
    name, _, port = host.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((name.strip("[]"), int(port)), timeout=timeout).close()
            return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise PermanentError(
                    f"nothing answers at {host} ({EMULATOR_HOST_ENV}: {error.strerror or error}): start "
                    "`cloudrun-reconciler emulator` there, or unset the variable to use Google Cloud"
                ) from None
            time.sleep(0.1)


def _status_name(error: gexc.GoogleAPICallError) -> str:
    return error.grpc_status_code.name if error.grpc_status_code is not None else str(error.code)


@contextmanager
def _translated(*, rollout: bool = False) -> Iterator[None]:
    """Map Google's exceptions to the controller's own, with redacted messages. With `rollout`, the error
    came from a long-running operation: the update was accepted and the rollout failed."""
    try:
        yield
    except gexc.GoogleAPICallError as error:
        code = _status_name(error)
        message = redact_text(f"{code}: {error.message}{_violations(error)}")
        if rollout:
            raise RolloutError(f"the rollout failed: {message}", code) from None
        if isinstance(error, _CONFLICT):
            raise ConflictError(message, code) from None
        if isinstance(error, gexc.NotFound):
            raise NotFoundError(message, code) from None
        if isinstance(error, _TRANSIENT):
            raise TransientError(message, code) from None
        raise PermanentError(message, code) from None
    except gexc.RetryError as error:
        cause = error.cause
        last = f"{_status_name(cause)}: {cause.message}" if isinstance(cause, gexc.GoogleAPICallError) else ""
        raise TransientError(
            redact_text(f"gave up retrying ({error.message}){'; last error ' + last if last else ''}"),
            "DEADLINE_EXCEEDED",
        ) from None
    except TimeoutError as error:  # the operation's own deadline (`.result(timeout=…)`), not an RPC's
        raise TransientError(f"the operation did not finish in time: {error}", "DEADLINE_EXCEEDED") from None


def _violations(error: gexc.GoogleAPICallError) -> str:
    """The field violations of a `BadRequest` detail, which say which field the API refused and why."""
    found = [
        f"{violation.field}: {violation.description}"
        for detail in error.details or ()
        for violation in getattr(detail, "field_violations", ())
    ]
    return f" ({'; '.join(found)})" if found else ""


class CloudRunServices:
    """Reads and writes Cloud Run services through one `ServicesClient`."""

    def __init__(self, client: run_v2.ServicesClient, *, operation_timeout: float = 600.0) -> None:
        self._client = client
        self._operation_timeout = operation_timeout
        # The library's default LRO polling starts near 1 s; a Cloud Run update is usually done sooner.
        self._polling = polling.DEFAULT_POLLING.with_delay(
            initial=0.05, maximum=5.0, multiplier=1.5
        ).with_timeout(operation_timeout)

    def close(self) -> None:
        """Close the channel (before an in-process emulator stops, so no call is cut)."""
        self._client.transport.close()

    def list_services(self, project: str, region: str) -> list[LiveService]:
        """Every service in one project and region: one paged `ListServices`, not a Get per service."""
        with _translated():
            pager = self._client.list_services(request={"parent": f"projects/{project}/locations/{region}"})
            return [_live(service) for service in pager]

    def get_service(self, key: ServiceKey) -> LiveService:
        with _translated():
            return _live(self._client.get_service(request={"name": key.resource_name}))

    def apply(
        self, live: LiveService, changes: Iterable[FieldChange], *, validate_only: bool = False
    ) -> LiveService:
        """Write `changes` onto the service as read, guarded by its etag; return the service as updated.

        With `validate_only`, Cloud Run checks the same request and stores nothing (a server-side dry run)."""
        service, paths = _updated(live.raw, changes)
        mask = field_mask_pb2.FieldMask(paths=paths)
        request = run_v2.UpdateServiceRequest(service=service, update_mask=mask, validate_only=validate_only)
        with _translated():
            operation = self._client.update_service(request=request)
        # What the operation itself reports is the rollout's fate, never an etag conflict.
        with _translated(rollout=True):
            return _live(operation.result(timeout=self._operation_timeout, polling=self._polling))


def _live(service: run_v2.Service) -> LiveService:
    return LiveService(observe(service), service)


def observe(service: run_v2.Service) -> ObservedService:
    """The managed view of a service, with Cloud Run's defaults filled in where it left a field out."""
    pb = run_v2.Service.pb(service)
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
        failure=pb.terminal_condition.message if pb.terminal_condition.state == _FAILED else "",
        traffic=tuple((status.revision.rsplit("/", 1)[-1], status.percent) for status in pb.traffic_statuses),
        last_modifier=pb.last_modifier,
        client=pb.client,
        labels=tuple(sorted(pb.labels.items())),
        annotations=tuple(sorted(pb.annotations.items())),
    )


def _gcs_volume(volume: Any) -> GcsVolume | OtherVolume:
    source = volume.WhichOneof("volume_type")
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
        return SecretRef(secret=ref.secret, version=ref.version or "latest")
    return str(env.value)


def _updated(raw: run_v2.Service, changes: Iterable[FieldChange]) -> tuple[run_v2.Service, list[str]]:
    """A copy of `raw` with `changes` written in, and the mask paths they touch, in a stable order."""
    pb = type(run_v2.Service.pb(raw))()
    pb.CopyFrom(run_v2.Service.pb(raw))
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
        pb.annotations[change.key] = str(new)
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
        mount = mount if mount is not None else container.volume_mounts.add(name=change.key)
        mount.mount_path = str(new)


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
