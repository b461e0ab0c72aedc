"""The emulator's own speed, as issue 4 asks: a Get round trip through the real client on loopback, and
the time of a paged `ListServices` by fleet size, per page.

Client and emulator share this process, as in the tests and the demo. The Get is timed one call at a time
(`perf_counter` around `get_service`, after a warm-up) on a one-service emulator; the list is the whole
pager walked page by page (`.pages`, counting each page's services), the median of several walks, on an
emulator holding N services of `fleet_fixture.py` (100 per page, the API's default page size). "Serves
1,000 services without slowing by more than the number of pages" reads: the time per page stays flat as
the fleet grows, so a list of 1,000 costs its 10 pages and no more.

Run alone: .venv/bin/python benchmarks/emulator_speed.py [N ...]; `benchmarks/fleet.py` runs it too.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import fleet_fixture as fixture

from controller.cloudrun import services_client
from emulator import Emulator

GETS, WARM_UP, WALKS = 2000, 100, 7


def _get_round_trip() -> dict[str, float]:
    with Emulator() as server:
        fixture.seed_services(server, 1)
        client = services_client(server.address)
        request = {"name": fixture.resource_name(0)}
        for _ in range(WARM_UP):
            client.get_service(request=request)
        times = []
        for _ in range(GETS):
            started = time.perf_counter()
            client.get_service(request=request)
            times.append(time.perf_counter() - started)
        client.transport.close()
    times.sort()
    return {"median": statistics.median(times), "p90": times[int(len(times) * 0.9)], "calls": GETS}


def _list(count: int) -> dict[str, float]:
    with Emulator() as server:
        fixture.seed_services(server, count)
        client = services_client(server.address)
        walks, pages = [], 0
        for _ in range(WALKS):
            started = time.perf_counter()
            pages = seen = 0
            for page in client.list_services(request={"parent": fixture.PARENT}).pages:
                pages += 1
                seen += len(page.services)
            walks.append(time.perf_counter() - started)
            assert seen == count, seen
        client.transport.close()
    total = statistics.median(walks)
    return {"count": count, "pages": pages, "total": total, "per_page": total / pages}


def measure(sizes: list[int]) -> dict[str, Any]:
    return {"get": _get_round_trip(), "lists": [_list(count) for count in sorted(sizes)]}


def print_speed(speed: dict[str, Any]) -> None:
    get = speed["get"]
    print("\n## Emulator (issue 4): Get round trip through the client on loopback")
    print(f"median {get['median'] * 1000:.3f} ms, p90 {get['p90'] * 1000:.3f} ms over {get['calls']} calls")
    print("\n## Emulator (issue 4): a paged ListServices walked to the end (median of 7)")
    print("| services | pages | list ms | ms per page | µs per service | ms per page vs 100 services |")
    print("|---:|---:|---:|---:|---:|---:|")
    lists = speed["lists"]
    full = [row for row in lists if row["count"] >= 100]  # a full first page: the API's default size
    reference = full[0]["per_page"] if full else lists[0]["per_page"]
    for row in lists:
        print(
            f"| {row['count']:,} | {row['pages']} | {row['total'] * 1000:.2f} | "
            f"{row['per_page'] * 1000:.2f} | {row['total'] / row['count'] * 1e6:.1f} | "
            f"{row['per_page'] / reference:.2f}× |"
        )


if __name__ == "__main__":
    print_speed(measure([int(arg) for arg in sys.argv[1:]] or [10, 100, 1000]))
