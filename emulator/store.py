"""The emulated Cloud Run service registry: what the Admin API v2 would hold and answer, without the wire.

Owns services as raw `google.cloud.run.v2.Service` protobufs, the server defaults and output-only fields
Cloud Run fills in, etag checks, `update_mask` handling, revision naming, validation with field
violations, and done long-running operations. Every method is thread-safe; errors are `ApiError`s that
the gRPC layer turns into status codes. See `emulator/FIDELITY.md` for what follows which source.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2

__all__ = ["ApiError", "ServiceStore"]

# Generated protobuf classes carry no static types; `ServicePb` names the role in signatures.
ServicePb: TypeAlias = Any
_SERVICE_PB: Any = run_v2.Service.pb()
_LaunchStage = _SERVICE_PB.DESCRIPTOR.fields_by_name["launch_stage"].enum_type
_MAX_TIMEOUT_SECONDS = 3600
_DEFAULT_PAGE_SIZE = 100
_MAX_PAGE_SIZE = 1000
DEFAULT_PRINCIPAL = "user:operator@example.com"


@dataclass
class ApiError(Exception):
    """An error the API answers with: a gRPC status code, a message, optional field violations."""

    code: grpc.StatusCode
    message: str
    violations: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        violations = "; ".join(f"{path}: {text}" for path, text in self.violations)
        return f"{self.code.name}: {self.message}" + (f" ({violations})" if violations else "")

    def details(self) -> list[any_pb2.Any]:
        if not self.violations:
            return []
        request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=path, description=text)
                for path, text in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(request)
        return [packed]


def _now() -> datetime:
    return datetime.now(UTC)


class ServiceStore:
    """Services by full name, their revisions, and the operations that changed them."""

    def __init__(self, clock: Callable[[], datetime] = _now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._services: dict[str, ServicePb] = {}
        self._revisions: dict[str, dict[str, bytes]] = {}  # service → revision name → template
        self._operations: dict[str, operations_pb2.Operation] = {}
        self._pending: dict[str, int | None] = {}  # operation → GetOperation polls left before it is done
        # How many polls an update's operation takes to finish: 0 is at once, None is never (a stuck rollout).
        self.operation_polls: int | None = 0
        # When set, every new revision fails to become ready with this message (a container that crashes).
        self.failing_revisions: str | None = None
        self.calls: Counter[str] = Counter()
        self.update_requests: list[ServicePb] = []  # every UpdateService body as received, for inspection
        self.update_masks: list[list[str]] = []

    # --- reads -------------------------------------------------------------------------------------

    def get(self, name: str) -> ServicePb:
        with self._lock:
            return copy.deepcopy(self._require(name))

    def list_services(
        self, parent: str, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[ServicePb], str]:
        """One page of the services under `parent`, in name order, and the token of the next page."""
        size = min(page_size or _DEFAULT_PAGE_SIZE, _MAX_PAGE_SIZE)
        try:
            start = int(page_token) if page_token else 0
        except ValueError:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid page token {page_token!r}") from None
        with self._lock:
            names = sorted(n for n in self._services if n.startswith(f"{parent}/services/"))
            page = [copy.deepcopy(self._services[n]) for n in names[start : start + size]]
        token = str(start + size) if start + size < len(names) else ""
        return page, token

    def list_names(self) -> list[str]:
        """Every stored service's full name, sorted."""
        with self._lock:
            return sorted(self._services)

    def get_operation(self, name: str) -> operations_pb2.Operation:
        with self._lock:
            if name not in self._operations:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"Operation {name} not found")
            left = self._pending.get(name, 0)
            if left is not None and left > 0:
                self._pending[name] = left - 1
            return self._as_seen(name)

    def _as_seen(self, name: str) -> operations_pb2.Operation:
        """The operation as a poll sees it now: done, or still running with only its metadata."""
        operation = copy.deepcopy(self._operations[name])
        if self._pending.get(name, 0) != 0:
            operation.done = False
            operation.ClearField("result")
        return operation

    # --- writes ------------------------------------------------------------------------------------

    def seed(self, service: ServicePb, principal: str = DEFAULT_PRINCIPAL) -> ServicePb:
        """Put a live service in place as if it had been deployed; output fields it gives are kept."""
        with self._lock:
            stored = copy.deepcopy(service)
            _fill_defaults(stored)
            _validate(stored)
            now = self._timestamp()
            stored.uid = stored.uid or str(uuid.uuid5(uuid.NAMESPACE_URL, stored.name))
            stored.generation = stored.generation or 1
            for stamp in (stored.create_time, stored.update_time):
                if not stamp.seconds:
                    stamp.CopyFrom(now)
            stored.creator = stored.creator or principal
            stored.last_modifier = stored.last_modifier or principal
            stored.uri = stored.uri or _uri(stored.name)
            self._revisions[stored.name] = {}
            self._new_revision(stored, requested=stored.template.revision)
            self._settle(stored)
            stored.etag = stored.etag or _etag(stored)
            self._services[stored.name] = stored
            return copy.deepcopy(stored)

    def update(
        self,
        service: ServicePb,
        mask: field_mask_pb2.FieldMask,
        *,
        validate_only: bool = False,
        principal: str = DEFAULT_PRINCIPAL,
    ) -> operations_pb2.Operation:
        """UpdateService: etag check, mask, defaults, validation, maybe a revision; a done operation."""
        with self._lock:
            self.update_requests.append(copy.deepcopy(service))
            self.update_masks.append(list(mask.paths))
            current = self._require(service.name)
            if service.etag and service.etag != current.etag:
                raise ApiError(
                    grpc.StatusCode.ABORTED,
                    f"etag mismatch for {service.name}: the service was modified since it was read "
                    f"(sent {service.etag}, current {current.etag})",
                )
            updated = _merged(current, service, mask)
            _fill_defaults(updated)
            _validate(updated)
            # The name as merged: under a mask without `template.revision`, the stored name stays.
            requested = updated.template.revision
            self._check_revision_name(updated, requested)
            if validate_only:
                return self._operation(updated, store=False)
            failure = None
            if _configuration(updated) != _configuration(current):
                updated.generation = current.generation + 1
                updated.last_modifier = principal
                updated.update_time.CopyFrom(self._timestamp())
                if _template_bytes(updated) != _template_bytes(current):
                    self._new_revision(updated, requested)
                    failure = self._failure(updated)
                self._settle(updated, failure)
                updated.etag = _etag(updated)
            self._services[updated.name] = updated
            return self._operation(updated, store=True, failure=failure)

    # --- internals ---------------------------------------------------------------------------------

    def _require(self, name: str) -> ServicePb:
        if name not in self._services:
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"Resource '{name}' was not found")
        return self._services[name]

    def _timestamp(self) -> timestamp_pb2.Timestamp:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(self._clock())
        return stamp

    def _check_revision_name(self, service: ServicePb, requested: str) -> None:
        known = self._revisions.get(service.name, {})
        if requested and requested in known and known[requested] != _template_bytes(service):
            raise ApiError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"Revision named '{requested}' with different configuration already exists.",
            )

    def _new_revision(self, service: ServicePb, requested: str) -> None:
        revisions = self._revisions.setdefault(service.name, {})
        short = service.name.rsplit("/", 1)[-1]
        if requested and requested not in revisions:
            revision = requested
        else:
            number = len(revisions) + 1
            suffix = hashlib.sha256(f"{service.name}/{number}".encode()).hexdigest()[:3]
            revision = f"{short}-{number:05d}-{suffix}"
        revisions[revision] = _template_bytes(service)
        parent = service.name.rsplit("/services/", 1)[0]
        service.latest_created_revision = f"{parent}/revisions/{revision}"

    def _failure(self, service: ServicePb) -> str | None:
        if self.failing_revisions is None:
            return None
        revision = service.latest_created_revision.rsplit("/", 1)[-1]
        return f"Revision '{revision}' is not ready and cannot serve traffic. {self.failing_revisions}"

    def _settle(self, service: ServicePb, failure: str | None = None) -> None:
        """Cloud Run's own convergence, done at once: ready and serving the latest revision, or, when the
        new revision fails, still serving the last ready one with the failure in the terminal condition."""
        service.observed_generation = service.generation
        service.reconciling = False
        if failure is None:
            service.latest_ready_revision = service.latest_created_revision
        service.terminal_condition.Clear()
        service.terminal_condition.type_ = "Ready"
        service.terminal_condition.state = (
            run_v2.Condition.State.CONDITION_FAILED if failure else run_v2.Condition.State.CONDITION_SUCCEEDED
        )
        service.terminal_condition.message = failure or ""
        service.terminal_condition.last_transition_time.CopyFrom(self._timestamp())
        del service.traffic_statuses[:]
        revision = service.latest_ready_revision.rsplit("/", 1)[-1]
        for target in service.traffic:
            status = service.traffic_statuses.add(type_=target.type_, percent=target.percent, tag=target.tag)
            status.revision = target.revision or revision

    def _operation(
        self, service: ServicePb, *, store: bool, failure: str | None = None
    ) -> operations_pb2.Operation:
        location = service.name.rsplit("/services/", 1)[0]
        operation = operations_pb2.Operation(name=f"{location}/operations/{uuid.uuid4()}", done=True)
        if failure:
            operation.error.code = grpc.StatusCode.FAILED_PRECONDITION.value[0]
            operation.error.message = failure
        else:
            operation.response.Pack(service)
        operation.metadata.Pack(service)
        if not store:
            return operation
        self._operations[operation.name] = operation
        self._pending[operation.name] = self.operation_polls
        return self._as_seen(operation.name)


_OUTPUT_ONLY = (
    "uid",
    "generation",
    "create_time",
    "update_time",
    "delete_time",
    "expire_time",
    "creator",
    "last_modifier",
    "observed_generation",
    "terminal_condition",
    "conditions",
    "latest_ready_revision",
    "latest_created_revision",
    "traffic_statuses",
    "uri",
    "urls",
    "reconciling",
    "etag",
    "satisfies_pzs",
)


def _merged(current: ServicePb, sent: ServicePb, mask: field_mask_pb2.FieldMask) -> ServicePb:
    """`current` with the masked paths of `sent`; no mask means the whole service as sent."""
    if not mask.paths:
        updated = copy.deepcopy(sent)
        for name in _OUTPUT_ONLY:  # output-only fields in a request are ignored, as by Cloud Run
            updated.ClearField(name)
            _copy_field(current, updated, name)
    else:
        if not mask.IsValidForDescriptor(_SERVICE_PB.DESCRIPTOR):
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid update_mask: {', '.join(mask.paths)}",
                [(path, "no such field in google.cloud.run.v2.Service") for path in mask.paths],
            )
        updated = copy.deepcopy(current)
        mask.MergeMessage(sent, updated, replace_message_field=True, replace_repeated_field=True)
    # The writer's identity is recorded from the request, whatever the mask says.
    updated.client, updated.client_version = sent.client, sent.client_version
    return updated


def _copy_field(source: ServicePb, target: ServicePb, name: str) -> None:
    descriptor = _SERVICE_PB.DESCRIPTOR.fields_by_name[name]
    if descriptor.is_repeated:
        getattr(target, name).extend(getattr(source, name))
    elif descriptor.message_type is not None:
        if source.HasField(name):
            getattr(target, name).CopyFrom(getattr(source, name))
    else:
        setattr(target, name, getattr(source, name))


def _fill_defaults(service: ServicePb) -> None:
    """Fields Cloud Run fills in when a request leaves them out (FACTS.md, Terraform `default_from_api`)."""
    if not service.launch_stage:
        service.launch_stage = _LaunchStage.values_by_name["GA"].number
    if not service.ingress:
        service.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL
    template = service.template
    if not template.HasField("timeout"):
        template.timeout.FromSeconds(300)
    if not template.scaling.max_instance_count:
        template.scaling.max_instance_count = 100
    if not template.max_instance_request_concurrency:
        template.max_instance_request_concurrency = 80
    for container in template.containers:
        if not container.HasField("resources"):
            container.resources.cpu_idle = True
        limits = container.resources.limits
        limits.setdefault("cpu", "1000m")
        limits.setdefault("memory", "512Mi")
    if len(template.containers) == 1 and not template.containers[0].ports:
        template.containers[0].ports.add(name="http1", container_port=8080)
    if not service.traffic:
        service.traffic.add(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100
        )


def _validate(service: ServicePb) -> None:
    violations: list[tuple[str, str]] = []
    timeout = service.template.timeout.ToTimedelta().total_seconds()
    if not 0 < timeout <= _MAX_TIMEOUT_SECONDS:
        violations.append(
            (
                "spec.template.spec.timeoutSeconds",
                f"Timeout must be between 1 and {_MAX_TIMEOUT_SECONDS} seconds, got {timeout:g}.",
            )
        )
    for prefix, scaling in (("scaling", service.scaling), ("template.scaling", service.template.scaling)):
        if scaling.max_instance_count and scaling.min_instance_count > scaling.max_instance_count:
            violations.append(
                (
                    f"{prefix}.min_instance_count",
                    "min_instance_count must be less than or equal to max_instance_count.",
                )
            )
    for index, container in enumerate(service.template.containers):
        paths = [mount.mount_path for mount in container.volume_mounts]
        for path in sorted({p for p in paths if paths.count(p) > 1}):
            violations.append(
                (
                    f"template.containers[{index}].volume_mounts",
                    f"mount path {path} is used by more than one volume mount.",
                )
            )
    if violations:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "The request has errors", violations)


def _template_bytes(service: ServicePb) -> bytes:
    template = copy.deepcopy(service.template)
    template.revision = ""
    return bytes(template.SerializeToString(deterministic=True))


def _configuration(service: ServicePb) -> bytes:
    """Everything a user can set: what changes `generation` when it changes."""
    spec = copy.deepcopy(service)
    for name in (*_OUTPUT_ONLY, "client", "client_version"):
        spec.ClearField(name)
    return bytes(spec.SerializeToString(deterministic=True))


def _etag(service: ServicePb) -> str:
    digest = hashlib.sha256(
        service.name.encode() + str(service.generation).encode() + _configuration(service)
    )
    return f'"{digest.hexdigest()[:20]}"'


def _uri(name: str) -> str:
    short = name.rsplit("/", 1)[-1]
    return f"https://{short}-{hashlib.sha256(name.encode()).hexdigest()[:10]}-uc.a.run.app"
