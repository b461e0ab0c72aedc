"""`cloudrun-reconciler run` as a process: the loop on a thread, HTTP on another, signals on the main one.

Owns the wiring of the deployed controller (the real clients, the metrics they count calls into, the
endpoints) and its shutdown: on SIGTERM no new write starts, the one in flight gets `--shutdown-grace`,
and the process is gone within Cloud Run's 10 s either way.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from controller.errors import PermanentError
from desired import Severity

__all__ = ["serve"]


def serve(args: argparse.Namespace) -> int:
    """The controller as deployed: the loop on a thread, HTTP on another, signals on this one."""
    import structlog

    from controller.clock import SystemClock
    from controller.cloudrun import CloudRunServices, services_client
    from controller.endpoints import EndpointServer
    from controller.flap import FlapPolicy
    from controller.metrics import Metrics
    from controller.runner import Controller, RunSettings, settle_heap

    log = structlog.get_logger("controller.cli")
    metrics = Metrics()
    settings = RunSettings(
        file=args.file,
        dry_run=True if args.dry_run else None,
        interval=args.interval,
        poll=args.poll,
        pass_timeout=args.pass_timeout,
        workers=max(1, args.workers),
        flap=FlapPolicy(limit=max(1, args.flap_limit)),
        signal_delay=args.signal_delay,
    )
    gateway = CloudRunServices(
        services_client(),
        operation_timeout=args.pass_timeout,
        on_call=lambda method, code: metrics.api_calls.labels(method, code).inc(),
    )
    from controller.signals import SignalReader, signal_clients

    count = metrics.api_calls
    signals = SignalReader(
        *signal_clients(),
        manage_log_metrics=args.manage_log_metric,
        on_call=lambda method, code: count.labels(method, code).inc(),
    )
    controller = Controller(settings, gateway, clock=SystemClock(), metrics=metrics, signals=signals)
    checked = controller.load_or_wait()  # an invalid file is reported; the loop waits for a valid one
    for finding in checked.findings if checked else ():  # events like any other: JSON off a terminal
        if finding.severity is not Severity.NOTE:
            log.warning(
                "desired_file_finding",
                at=f"{finding.file}:{finding.line}:{finding.column}",
                code=finding.code,
                field=finding.field,
                reason=finding.message,
                fix=finding.fix,
                finding_severity=str(finding.severity),
            )
    settle_heap()
    try:
        server = EndpointServer(controller, args.port, args.host).start()
    except OSError as error:
        raise PermanentError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None

    def stop(signum: int, _: FrameType | None) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        controller.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    loop = threading.Thread(target=controller.serve, name="loop", daemon=True)
    loop.start()
    log.info(
        "controller_started",
        file=args.file,
        port=server.port,
        interval=controller.interval,
        dry_run=controller.dry_run,
        services=len(checked.state.services) if checked else 0,
        desired_file_valid=checked is not None,
    )
    while loop.is_alive() and not controller.stopping:
        loop.join(0.5)  # short joins keep this thread free to take signals
    loop.join(args.shutdown_grace)
    if loop.is_alive():
        log.warning("shutdown_abandoned", reason=f"in-flight work outlived {args.shutdown_grace}s")
        server.stop()
        sys.stdout.flush()
        sys.stderr.flush()
        # Writer threads still waiting on the API would hold the interpreter past Cloud Run's 10 s; an
        # abandoned write is safe: it was etag-guarded, and the next controller re-reads everything.
        os._exit(0)
    server.stop()
    if not loop.is_alive():
        gateway.close()
        signals.close()
    return 0
