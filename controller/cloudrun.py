"""The adapter over the Cloud Run Admin API v2: the only module here that speaks `google.cloud.run_v2`.

Owns building the real `ServicesClient` (an insecure channel to `CLOUD_RUN_EMULATOR_HOST` when set,
Application Default Credentials and the real endpoint otherwise), the calls themselves (one paged list,
get, and the read-modify-write update with the etag read and an `update_mask` of the changed owned paths),
and translating Google's exceptions into `controller.errors` at this boundary. The translation of the
Service message itself lives in `controller.cloudrun_shape`.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.api_core.future import polling
from google.auth import exceptions as auth_exceptions
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport
from google.protobuf import field_mask_pb2

from controller.cloudrun_shape import Remembered, live_service, observe, remembered_service, updated_service
from controller.diff import FieldChange
from controller.errors import ConflictError, NotFoundError, PermanentError, RolloutError, TransientError
from controller.model import CLIENT_NAME, LiveService
from desired import ServiceKey
from desired.redaction import redact_text

__all__ = ["CLIENT_NAME", "EMULATOR_HOST_ENV", "CloudRunServices", "observe", "services_client"]

EMULATOR_HOST_ENV = "CLOUD_RUN_EMULATOR_HOST"
_HOST_PORT = re.compile(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")

_CONFLICT = (gexc.Aborted, gexc.FailedPrecondition)
_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.ResourceExhausted,
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.Cancelled,
    gexc.Unknown,
)
# A poll of an update's operation is a read: safe to repeat on any of these (the library retries none).
_POLL_RETRYABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.Aborted,
    gexc.TooManyRequests,
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


CallObserver = Callable[[str, str], None]


class CloudRunServices:
    """Reads and writes Cloud Run services through one `ServicesClient`.

    `on_call(method, code)` hears of every API call made, by its RPC name and status ("OK" or the gRPC
    code name), each `ListServices` page and `GetOperation` poll included as far as the client exposes them.
    """

    def __init__(
        self,
        client: run_v2.ServicesClient,
        *,
        operation_timeout: float = 600.0,
        on_call: CallObserver | None = None,
    ) -> None:
        self._client = client
        self._operation_timeout = operation_timeout
        self._on_call = on_call
        self._listed: dict[str, Remembered] = {}  # by parent: the services its last full listing read
        # The library's default LRO polling starts near 1 s; a Cloud Run update is usually done sooner.
        self._polling = polling.DEFAULT_POLLING.with_delay(
            initial=0.05, maximum=5.0, multiplier=1.5
        ).with_timeout(operation_timeout)
        # How a failed poll (GetOperation) is retried, as the library's `result(retry=…)` offers it.
        self._poll_retry = retries.Retry(
            predicate=retries.if_exception_type(*_POLL_RETRYABLE),
            initial=0.05,
            maximum=1.0,
            multiplier=2.0,
            timeout=min(30.0, operation_timeout),
        )

    def close(self) -> None:
        """Close the channel (before an in-process emulator stops, so no call is cut)."""
        self._client.transport.close()

    @contextmanager
    def _counted(self, method: str) -> Iterator[None]:
        """Tell `on_call` of one call and how it ended."""
        if self._on_call is None:
            yield
            return
        try:
            yield
        except gexc.GoogleAPICallError as error:
            self._on_call(method, _status_name(error))
            raise
        except gexc.RetryError:
            self._on_call(method, "DEADLINE_EXCEEDED")
            raise
        self._on_call(method, "OK")

    def list_services(self, project: str, region: str) -> list[LiveService]:
        """Every service in one project and region: one paged `ListServices`, not a Get per service."""
        found: list[LiveService] = []
        parent = f"projects/{project}/locations/{region}"
        before = self._listed.get(parent, {})
        now: Remembered = {}
        with _translated():
            with self._counted("ListServices"):
                pager = self._client.list_services(request={"parent": parent})
            pages = iter(pager.pages)  # the first page came with the call above; each next one is a call
            page = next(pages, None)
            while page is not None:
                # The raw protobufs: proto-plus would wrap each service again on every access.
                services = run_v2.ListServicesResponse.pb(page).services
                found.extend(remembered_service(service, before, now) for service in services)
                if not page.next_page_token:
                    break
                with self._counted("ListServices"):
                    page = next(pages, None)
        self._listed[parent] = now  # services gone from the listing are forgotten with it
        return found

    def get_service(self, key: ServiceKey) -> LiveService:
        with _translated(), self._counted("GetService"):
            return live_service(self._client.get_service(request={"name": key.resource_name}))

    def apply(
        self, live: LiveService, changes: Iterable[FieldChange], *, validate_only: bool = False
    ) -> LiveService:
        """Write `changes` onto the service as read, guarded by its etag; return the service as updated.

        With `validate_only`, Cloud Run checks the same request and stores nothing (a server-side dry run)."""
        service, paths = updated_service(live.raw, changes)
        mask = field_mask_pb2.FieldMask(paths=paths)
        request = run_v2.UpdateServiceRequest(service=service, update_mask=mask, validate_only=validate_only)
        with _translated(), self._counted("UpdateService"):
            operation = self._client.update_service(request=request)
        return live_service(self._finished(operation))

    def _finished(self, operation: Any) -> run_v2.Service:
        """The service as the update's operation ends. An operation that ended in an error is the
        rollout's fate (a revision that failed), never an etag conflict. A poll that fails even after its
        retries says nothing of the rollout: the update may well be stored, so it is a transient error,
        and the next pass reads what became of it."""
        try:
            return operation.result(
                timeout=self._operation_timeout, polling=self._polling, retry=self._poll_retry
            )
        except gexc.GoogleAPICallError as error:
            if not operation.operation.done:
                code = _status_name(error)
                raise TransientError(
                    redact_text(
                        f"the update was sent; polling its operation failed: {code}: {error.message}"
                    ),
                    code,
                ) from None
            with _translated(rollout=True):
                raise
        except TimeoutError:
            with _translated():
                raise
