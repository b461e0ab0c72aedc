"""Cost of one reconcile pass against the emulator, by fleet size, as ratios against a baseline.

Prints, for fleets of N services in one project and region (all declared, all drifted on the first pass):
  - plan pass wall time, and its ratio to the baseline: one bare paged `ListServices` of the same fleet
    through the same client in the same run (the least a pass can do);
  - API calls per pass (from the emulator's counters);
  - CPU time per service for the plan pass and for the apply pass;
  - peak Python memory of a plan pass (tracemalloc).
Run: .venv/bin/python benchmarks/bench_pass.py [N ...]
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

from controller.cloudrun import CloudRunServices, services_client
from controller.logs import configure_logging
from controller.reconcile import reconcile
from desired import DesiredState
from emulator import Emulator, service_from_dict

PARENT = "projects/demo-project/locations/us-central1"


def _seed(server: Emulator, count: int) -> DesiredState:
    for index in range(count):
        server.store.seed(
            service_from_dict(
                {
                    "name": f"{PARENT}/services/svc-{index:04d}",
                    "template": {
                        "containers": [
                            {"image": "img:1", "env": [{"name": "DATABASE_URL", "value": "sqlite:///x"}]}
                        ]
                    },
                }
            )
        )
    return DesiredState.model_validate(
        {
            "defaults": {"project": "demo-project", "region": "us-central1"},
            "services": [
                {
                    "name": f"svc-{i:04d}",
                    "project": "demo-project",
                    "region": "us-central1",
                    "timeout": "1h",
                    "scaling": {"level": "service", "minInstances": 1, "maxInstances": 10},
                    "cpuAlwaysAllocated": True,
                    "env": {"DATABASE_URL": "sqlite:///x?_journal_mode=WAL"},
                }
                for i in range(count)
            ],
        }
    )


def _timed(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of `repeat` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def measure(count: int) -> str:
    with Emulator() as server:
        desired = _seed(server, count)
        client = services_client(server.address)
        gateway = CloudRunServices(client)
        repeat = 5 if count <= 100 else 3
        base_wall, _ = _timed(lambda: list(client.list_services(request={"parent": PARENT})), repeat)
        plan_wall, plan_cpu = _timed(lambda: reconcile(desired, gateway, dry_run=True), repeat)
        server.store.calls.clear()
        reconcile(desired, gateway, dry_run=True)
        plan_calls = sum(server.store.calls.values())
        tracemalloc.start()
        reconcile(desired, gateway, dry_run=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        server.store.calls.clear()
        apply_wall, apply_cpu = _timed(lambda: reconcile(desired, gateway, dry_run=False), 1)
        apply_calls = sum(server.store.calls.values())
        client.transport.close()
    return (
        f"{count:>5}  {plan_wall * 1000:>9.1f}  {plan_wall / base_wall:>6.2f}x  {plan_calls:>10}  "
        f"{plan_cpu / count * 1e6:>11.0f}  {apply_wall * 1000:>10.1f}  {apply_calls:>11}  "
        f"{apply_cpu / count * 1e6:>12.0f}  {peak / 2**20:>8.2f}"
    )


def main(sizes: list[int]) -> None:
    configure_logging("warning")  # as the CLI runs by default; drift events are INFO
    header = "fleet  plan (ms)  vs list  plan calls  CPU/svc (µs)  apply (ms)  apply calls"
    print(header + "  apply CPU/svc  peak MiB")
    for count in sizes:
        print(measure(count), flush=True)
    print("baseline: one bare paged ListServices of the same fleet through the same client, same run")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1, 10, 100, 1000])
