"""The controller's side of the fleet benchmark, in a process of its own so its CPU and memory are its own.

Builds the controller as `cloudrun-reconciler run` does (the real clients on a plaintext channel to the
emulator, `CloudRunServices`, `SignalReader`, `Controller` on the system clock, logs at `info` as JSON
lines, to a file) and answers one command per line on stdin with one JSON line on stdout:

    pass    one `Controller.run_pass()`: what the loop runs every interval
    bare    the bare client fetch of the same data through the same clients: every `ListServices` page
            and the pass's three `ListTimeSeries` (the same requests), walking each pager's `.pages` and
            reading, on the raw protobuf of each page (as the controller does: proto-plus wrappers would
            cost more), each service's `name` and each point's value; nothing else: no translation, no
            plan, no decision, no status
    naive   the per-service baseline: one `GetService` and one `ListTimeSeries` per signal per service
            (filtered on the service), reading the same fields the same way
    memory  VmHWM and VmRSS of this process, in KiB
Each timed answer carries `wall` (perf_counter) and `cpu` (process_time: every thread of this process, the
emulator is not in it) in seconds.
Run by `benchmarks/fleet.py`, not by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fleet_fixture import PARENT, PROJECT, REQUEST_COUNT, SIGNALS
from google.cloud.monitoring_v3 import ListTimeSeriesResponse
from google.cloud.run_v2 import ListServicesResponse, Service

from controller.clock import SystemClock
from controller.cloudrun import CloudRunServices, services_client
from controller.logs import configure_logging
from controller.metrics import Metrics
from controller.runner import Controller, RunSettings, settle_heap
from controller.signals import (
    LOG_METRIC_GROUP_BY,
    REQUEST_GROUP_BY,
    SignalReader,
    series_request,
    signal_clients,
)

WINDOW, WINDOWS, SIGNAL_DELAY = 300, 3, 120.0  # as the fixture's desired file and `run`'s default


def memory() -> dict[str, int]:
    """Peak and current resident set of this process (Linux), in KiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) for key in ("VmHWM", "VmRSS")}


def _requests(end: datetime) -> list[Any]:
    return [
        series_request(
            PROJECT,
            metric,
            WINDOW,
            WINDOWS,
            end,
            REQUEST_GROUP_BY if metric == REQUEST_COUNT else LOG_METRIC_GROUP_BY,
        )
        for metric in SIGNALS
    ]


def _touch_series(pager: Any) -> int:
    """Read every point's value, the least the controller needs of a time series; return the count."""
    return sum(
        1
        for page in pager.pages
        for series in ListTimeSeriesResponse.pb(page).time_series
        for point in series.points
        if point.value.int64_value >= 0
    )


def _touch_services(pager: Any) -> int:
    """Read every service's name, the least the controller needs to match it to its spec."""
    return sum(
        1 for page in pager.pages for service in ListServicesResponse.pb(page).services if service.name
    )


class Worker:
    def __init__(self, desired_file: str) -> None:
        self.metrics = Metrics()
        count = self.metrics.api_calls
        self.services = services_client()
        monitoring, logging = signal_clients()
        self.monitoring = monitoring
        gateway = CloudRunServices(
            self.services, operation_timeout=120.0, on_call=lambda m, c: count.labels(m, c).inc()
        )
        reader = SignalReader(monitoring, logging, on_call=lambda m, c: count.labels(m, c).inc())
        self.controller = Controller(
            RunSettings(file=desired_file), gateway, clock=SystemClock(), metrics=self.metrics, signals=reader
        )
        self.controller.load()
        settle_heap()  # as `run` does after loading
        self.names = [spec.name for spec in self.controller.desired.state.services]

    def run_pass(self) -> dict[str, Any]:
        result = self.controller.run_pass()
        assert result is not None, "the pass crashed: see the worker's log"
        outcomes: dict[str, int] = {}
        for outcome in result.outcomes:
            outcomes[outcome.result.value] = outcomes.get(outcome.result.value, 0) + 1
        return {"outcomes": outcomes}

    def bare(self) -> dict[str, Any]:
        services = _touch_services(self.services.list_services(request={"parent": PARENT}))
        end = datetime.now(UTC) - timedelta(seconds=SIGNAL_DELAY)
        points = sum(_touch_series(self.monitoring.list_time_series(request=r)) for r in _requests(end))
        return {"services": services, "points": points}

    def naive(self) -> dict[str, Any]:
        end = datetime.now(UTC) - timedelta(seconds=SIGNAL_DELAY)
        services = points = 0
        for name in self.names:
            service = self.services.get_service(request={"name": f"{PARENT}/services/{name}"})
            services += bool(Service.pb(service).name)
            for request in _requests(end):
                request.filter += f' AND resource.labels.service_name = "{name}"'
                points += _touch_series(self.monitoring.list_time_series(request=request))
        return {"services": services, "points": points}


def _timed(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    answer = action()
    return {**answer, "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.log, "a", encoding="utf-8") as log:
        configure_logging("info", stream=log, json_lines=True)  # `run`'s default, to a file not a terminal
        worker = Worker(args.file)
        commands: dict[str, Callable[[], dict[str, Any]]] = {
            "pass": lambda: _timed(worker.run_pass),
            "bare": lambda: _timed(worker.bare),
            "naive": lambda: _timed(worker.naive),
            "memory": memory,
        }
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            print(json.dumps(commands[command]()), flush=True)


if __name__ == "__main__":
    main()
