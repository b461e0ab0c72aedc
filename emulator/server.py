"""The gRPC face of the emulator: Cloud Run's `Services`, `Operations` and Monitoring's `ListTimeSeries`.

Owns the wire: method paths and (de)serialisers exactly as the `google-cloud-run` client's transport uses
them, `ApiError` → gRPC status (field violations in the status details, as Google's APIs send them),
and starting and stopping the server, in-process or standalone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent import futures
from typing import Any

import grpc
from google.cloud import logging_v2, monitoring_v3, run_v2
from google.longrunning import operations_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from emulator.logmetrics import LogMetricStore
from emulator.monitoring import MetricStore
from emulator.store import ApiError, ServiceStore

__all__ = ["Emulator"]

_PRINCIPAL_HEADER = "x-emulator-principal"


def _pb(message_class: Any) -> Any:
    return message_class.pb()


class Emulator:
    """A running emulator: `address` for `CLOUD_RUN_EMULATOR_HOST`, `store` for seeding and inspection."""

    def __init__(self, store: ServiceStore | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = store or ServiceStore()
        self.metrics = MetricStore()
        self.log_metrics = LogMetricStore(self.store.clock)  # one clock for every API
        # No SO_REUSEPORT: a second emulator on a busy port must fail, not share it and answer half the calls.
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)]
        )
        self._server.add_generic_rpc_handlers((self._handlers(),))
        try:
            bound = self._server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port}: is another process using the port?")
        self.address = f"{host}:{bound}"

    def start(self) -> Emulator:
        self._server.start()
        return self

    def stop(self, grace: float | None = None) -> None:
        self.store.faults.stop()
        self._server.stop(grace).wait()

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def seed(self, services: Iterable[Any]) -> None:
        for service in services:
            self.store.seed(service)

    # --- wiring ------------------------------------------------------------------------------------

    def _handlers(self) -> grpc.GenericRpcHandler:
        store = self.store
        services = {
            "GetService": (_pb(run_v2.GetServiceRequest), lambda r, p: store.get(r.name)),
            "ListServices": (_pb(run_v2.ListServicesRequest), lambda r, p: _list_response(store, r)),
            "UpdateService": (
                _pb(run_v2.UpdateServiceRequest),
                lambda r, p: store.update(
                    r.service, r.update_mask, validate_only=r.validate_only, principal=p
                ),
            ),
            "CreateService": (
                _pb(run_v2.CreateServiceRequest),
                lambda r, p: store.create(
                    r.parent, r.service_id, r.service, validate_only=r.validate_only, principal=p
                ),
            ),
            "DeleteService": (
                _pb(run_v2.DeleteServiceRequest),
                lambda r, p: store.delete(r.name, etag=r.etag, validate_only=r.validate_only),
            ),
        }
        operations = {
            "GetOperation": (operations_pb2.GetOperationRequest, lambda r, p: store.get_operation(r.name)),
        }
        metrics = self.metrics
        monitoring = {
            "ListTimeSeries": (
                _pb(monitoring_v3.ListTimeSeriesRequest),
                lambda r, p: metrics.list_time_series(r),
            ),
        }
        log_metrics = self.log_metrics
        logging = {
            "GetLogMetric": (
                _pb(logging_v2.types.GetLogMetricRequest),
                lambda r, p: log_metrics.get(r.metric_name),
            ),
            "ListLogMetrics": (
                _pb(logging_v2.types.ListLogMetricsRequest),
                lambda r, p: log_metrics.list(r.parent),
            ),
            "CreateLogMetric": (
                _pb(logging_v2.types.CreateLogMetricRequest),
                lambda r, p: log_metrics.create(r.parent, r.metric),
            ),
            "UpdateLogMetric": (
                _pb(logging_v2.types.UpdateLogMetricRequest),
                lambda r, p: log_metrics.update(r.metric_name, r.metric),
            ),
        }
        handlers = {
            **{f"/google.cloud.run.v2.Services/{m}": spec for m, spec in services.items()},
            **{f"/google.longrunning.Operations/{m}": spec for m, spec in operations.items()},
            **{f"/google.monitoring.v3.MetricService/{m}": spec for m, spec in monitoring.items()},
            **{f"/google.logging.v2.MetricsServiceV2/{m}": spec for m, spec in logging.items()},
        }
        return _GenericHandler(
            {
                path: grpc.unary_unary_rpc_method_handler(
                    _unary(store, path.rsplit("/", 1)[-1], call),
                    request_deserializer=request_class.FromString,
                    response_serializer=lambda message: message.SerializeToString(),
                )
                for path, (request_class, call) in handlers.items()
            }
        )


def _list_response(store: ServiceStore, request: Any) -> Any:
    page, token = store.list_services(request.parent, request.page_size, request.page_token)
    return _pb(run_v2.ListServicesResponse)(services=page, next_page_token=token)


def _unary(store: ServiceStore, method: str, call: Callable[[Any, str], Any]) -> Callable[[Any, Any], Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        store.count(method)
        metadata = dict(context.invocation_metadata() or ())
        principal = str(metadata.get(_PRINCIPAL_HEADER) or "user:operator@example.com")
        try:
            fault = store.faults.take(method)
            if fault is not None:
                raise fault
            return call(request, principal)
        except ApiError as error:
            status = status_pb2.Status(
                code=error.code.value[0], message=error.message, details=error.details()
            )
            context.abort_with_status(rpc_status.to_status(status))

    return handle


class _GenericHandler(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc ships no stubs
    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = handlers

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)
