"""The emulated Cloud Run service registry: what the Admin API v2 would hold and answer, without the wire.

Owns services as raw `google.cloud.run.v2.Service` protobufs, the server defaults and output-only fields
Cloud Run fills in, etag checks, `update_mask` handling, revision naming, validation with field
violations, done long-running operations, and the history of every stored change (who wrote it, through
which door, the service before and after), so a soak can check what each writer changed. Every method is
thread-safe; errors are `ApiError`s that the gRPC layer turns into status codes. See `emulator/FIDELITY.md`
for what follows which source.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import field_mask_pb2, timestamp_pb2

from emulator.faults import Faults
from emulator.rules import ApiError, fill_defaults, validate

__all__ = ["ApiError", "ServiceStore", "StoredWrite"]

# Generated protobuf classes carry no static types; `ServicePb` names the role in signatures.
ServicePb: TypeAlias = Any
_SERVICE_PB: Any = run_v2.Service.pb()
_DEFAULT_PAGE_SIZE = 100
_MAX_PAGE_SIZE = 1000
DEFAULT_PRINCIPAL = "user:operator@example.com"


@dataclass(frozen=True)
class StoredWrite:
    """One change that was stored: `via` is `UpdateService` (the API) or `edit` (out of band)."""

    via: str
    name: str
    principal: str
    client: str
    mask: tuple[str, ...]
    before: ServicePb
    after: ServicePb


def utc_now() -> datetime:
    """The emulator's default clock; tests pass their own."""
    return datetime.now(UTC)


class ServiceStore:
    """Services by full name, their revisions, and the operations that changed them."""

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self.clock = clock
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
        self.faults = Faults()
        self.update_requests: list[ServicePb] = []  # every UpdateService body as received, for inspection
        self.update_masks: list[list[str]] = []
        self.writes: list[StoredWrite] = []  # every stored change, in order (a no-op update is none)

    def count(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1

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

    def history(self, since: int = 0) -> list[StoredWrite]:
        """The stored changes from the `since`-th on, oldest first."""
        with self._lock:
            return self.writes[since:]

    def snapshot(self) -> list[ServicePb]:
        """Every stored service as it is now, in name order: the emulator's own view, not an API call."""
        with self._lock:
            return [copy.deepcopy(self._services[name]) for name in sorted(self._services)]

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
            fill_defaults(stored)
            validate(stored)
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

    def create(
        self,
        parent: str,
        service_id: str,
        service: ServicePb,
        *,
        validate_only: bool = False,
        principal: str = DEFAULT_PRINCIPAL,
    ) -> operations_pb2.Operation:
        """CreateService: `parent` + `service_id` name it; a name already taken is ALREADY_EXISTS."""
        name = f"{parent}/services/{service_id}"
        with self._lock:
            if name in self._services:
                raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"Resource '{name}' already exists")
        created = copy.deepcopy(service)
        created.name = name
        for output in _OUTPUT_ONLY:
            created.ClearField(output)
        if validate_only:
            fill_defaults(created)
            validate(created)
            with self._lock:
                return self._operation(created, store=False)
        stored = self.seed(created, principal)
        with self._lock:
            return self._operation(stored, store=True)

    def delete(self, name: str, *, etag: str = "", validate_only: bool = False) -> operations_pb2.Operation:
        """DeleteService: etag-guarded like an update; the operation carries the service as it was."""
        with self._lock:
            current = self._require(name)
            if etag and etag != current.etag:
                raise ApiError(grpc.StatusCode.ABORTED, f"etag mismatch for {name}")
            if not validate_only:
                del self._services[name]
                self._revisions.pop(name, None)
            return self._operation(current, store=not validate_only)

    def edit(
        self, name: str, change: Callable[[ServicePb], None], *, principal: str, client: str = ""
    ) -> ServicePb:
        """An out-of-band edit as a person or a deploy tool makes it: `change` mutates a copy of the live
        service, which is written back whole under its own identity (`principal`, `client`)."""
        service = self.get(name)
        change(service)
        service.client = client
        self.update(service, field_mask_pb2.FieldMask(), principal=principal, via="edit")
        return self.get(name)

    def update(
        self,
        service: ServicePb,
        mask: field_mask_pb2.FieldMask,
        *,
        validate_only: bool = False,
        principal: str = DEFAULT_PRINCIPAL,
        via: str = "UpdateService",
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
            fill_defaults(updated)
            validate(updated)
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
                else:  # no new revision: a failed one stays failed, the ready one keeps serving
                    updated.observed_generation = updated.generation
                updated.etag = _etag(updated)
                self.writes.append(
                    StoredWrite(
                        via,
                        updated.name,
                        principal,
                        updated.client,
                        tuple(mask.paths),
                        copy.deepcopy(current),
                        copy.deepcopy(updated),
                    )
                )
            self._services[updated.name] = updated
            return self._operation(updated, store=True, failure=failure)

    # --- internals ---------------------------------------------------------------------------------

    def _require(self, name: str) -> ServicePb:
        if name not in self._services:
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"Resource '{name}' was not found")
        return self._services[name]

    def _timestamp(self) -> timestamp_pb2.Timestamp:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(self.clock())
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
