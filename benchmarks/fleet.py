"""The fleet benchmark: what one controller pass costs at 10, 100 and 1,000 services, against baselines
measured in the same run, plus the cold start of `cloudrun-reconciler run` and the emulator's own speed.

For each fleet size, in one project and region (`benchmarks/fleet_fixture.py` says what the fleet is):
  - the emulator runs in this process; the controller runs in another (`benchmarks/fleet_worker.py`), so
    its CPU time (`process_time`, all its threads) and peak RSS (`VmHWM`) are its own;
  - a first pass converges the fleet; then, in rounds, a steady-state pass, the bare client fetch of the
    same data, and the naive per-service fetch, interleaved so that the machine's drift hits all three;
  - then passes after 10 % of the services were drifted out of band (a different 10 % each time);
  - API calls by method come from the emulator's counters around each pass.
Then `cloudrun-reconciler run` is started as a subprocess against the largest fleet, converged: process
start to the log's first `pass_finished` (cold start), and the run process's VmHWM after three passes.
Last, the emulator's Get round trip and its list time per page (issue 4), from `emulator_speed.py`.

Run: .venv/bin/python benchmarks/fleet.py [N ...] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import emulator_speed
import fleet_fixture as fixture
from fleet_cold import cold_start, print_cold

from emulator import Emulator

HERE = Path(__file__).resolve().parent
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # no gRPC info lines from the processes started here


class WorkerProcess:
    """The controller process of `fleet_worker.py`, driven one command at a time."""

    def __init__(self, address: str, desired: Path, log: Path) -> None:
        env = {**os.environ, "CLOUD_RUN_EMULATOR_HOST": address}
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "fleet_worker.py"), "--file", str(desired), "--log", str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.read() == {"ready": True}

    def read(self) -> Any:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker ended (exit {self._process.wait()})")
        return json.loads(line)

    def call(self, command: str) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self.read()

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write("quit\n")
        self._process.stdin.close()
        self._process.wait(timeout=30)


def _counted(server: Emulator, worker: WorkerProcess, command: str) -> dict[str, Any]:
    """One worker command, with the API calls the emulator served during it, by method."""
    before = Counter(server.store.calls)
    answer = worker.call(command)
    calls = Counter(server.store.calls)
    calls.subtract(before)
    return {**answer, "calls": {method: n for method, n in sorted(calls.items()) if n}}


def measure_fleet(count: int, rounds: int, naive_rounds: int, drifted_passes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Emulator() as server:
        fixture.seed(server, count, datetime.now(UTC))
        desired = Path(tmp, "desired-state.yaml")
        desired.write_text(fixture.desired_yaml(count))
        worker = WorkerProcess(server.address, desired, Path(tmp, "worker.log"))
        try:
            first = _counted(server, worker, "pass")
            assert first["outcomes"] == {"applied": count}, first
            steady, bare, naive = [], [], []
            for index in range(rounds):
                steady.append(_counted(server, worker, "pass"))
                assert steady[-1]["outcomes"] == {"unchanged": count}, steady[-1]
                bare.append(_counted(server, worker, "bare"))
                if index < naive_rounds:
                    naive.append(_counted(server, worker, "naive"))
            memory_steady = worker.call("memory")
            drifted = []
            share = max(1, count // 10)
            for index in range(drifted_passes):
                fixture.drift(server, range(index * share, (index + 1) * share))
                drifted.append(_counted(server, worker, "pass"))
                outcomes = drifted[-1]["outcomes"]
                assert outcomes == {"applied": share, "unchanged": count - share} or share == count, outcomes
            memory = worker.call("memory")
        finally:
            worker.close()
    return {
        "count": count,
        "first": first,
        "steady": steady,
        "bare": bare,
        "naive": naive,
        "drifted": drifted,
        "drifted_share": share,
        "memory_steady": memory_steady,
        "memory": memory,
    }


def _median(samples: list[dict[str, Any]], key: str) -> float:
    return statistics.median(sample[key] for sample in samples)


def _calls(samples: list[dict[str, Any]]) -> str:
    """The calls of a pass by method; every sample must agree, else the spread is shown."""
    seen = {json.dumps(sample["calls"], sort_keys=True) for sample in samples}
    text = ", ".join(f"{method} {n}" for method, n in samples[0]["calls"].items())
    return text if len(seen) == 1 else f"{text} (varies: {len(seen)} patterns)"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(results: list[dict[str, Any]], cold: dict[str, Any] | None, speed: dict[str, Any]) -> None:
    print("\n## Steady state: one pass over a converged fleet (medians)")
    print(
        "| services | API calls per pass | pass wall ms | pass CPU ms | CPU µs/service | bare fetch ms "
        "| pass / bare | naive fetch ms | pass / naive | worker VmHWM MiB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        wall, cpu = _median(r["steady"], "wall"), _median(r["steady"], "cpu")
        bare = _median(r["bare"], "wall")
        naive = _median(r["naive"], "wall") if r["naive"] else float("nan")
        print(
            f"| {r['count']:,} | {_calls(r['steady'])} | {_ms(wall)} | {_ms(cpu)} | "
            f"{cpu / r['count'] * 1e6:.0f} | {_ms(bare)} | {wall / bare:.2f}× | {_ms(naive)} | "
            f"{wall / naive:.3f}× | {r['memory_steady']['VmHWM'] / 1024:.1f} |"
        )
    print("\n## 10 % drifted out of band (a deploy that reset the timeout), healed in the pass (medians)")
    print(
        "| services | drifted | API calls per pass | pass wall ms | CPU ms | CPU µs/service | pass / bare |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|")
    for r in results:
        wall, cpu = _median(r["drifted"], "wall"), _median(r["drifted"], "cpu")
        bare = _median(r["bare"], "wall")
        print(
            f"| {r['count']:,} | {r['drifted_share']} | {_calls(r['drifted'])} | {_ms(wall)} | {_ms(cpu)} | "
            f"{cpu / r['count'] * 1e6:.0f} | {wall / bare:.2f}× |"
        )
    print("\n## First pass (converges every service; the log-based metrics are checked once)")
    print("| services | API calls | wall ms | CPU ms | worker VmHWM MiB after all passes |")
    print("|---:|---|---:|---:|---:|")
    for r in results:
        first = r["first"]
        print(
            f"| {r['count']:,} | {_calls([first])} | {_ms(first['wall'])} | {_ms(first['cpu'])} | "
            f"{r['memory']['VmHWM'] / 1024:.1f} |"
        )
    if cold is not None:
        print_cold(cold)
    emulator_speed.print_speed(speed)
    _targets(results, cold)
    print(
        "\nworker VmHWM: the controller process's peak resident set (it converged the fleet first: 1,000 "
        "updates at the largest size); `run` VmHWM: a controller restarted on the converged fleet, after "
        "three passes."
    )
    print(
        "bare fetch: every ListServices page and the pass's three ListTimeSeries requests, through the "
        "same clients in the same process, each pager walked page by page and read on the raw protobuf: "
        "each service's name, each point's value; naive: one GetService and one ListTimeSeries per "
        "signal per service (filtered on it), reading the same fields the same way."
    )


def _targets(results: list[dict[str, Any]], cold: dict[str, Any] | None) -> None:
    big = max(results, key=lambda r: r["count"])
    count = big["count"]
    pages = -(-count // 100)
    steady_calls = big["steady"][0]["calls"]
    expected = {"ListServices": pages, "ListTimeSeries": len(fixture.SIGNALS)}
    wall, bare = _median(big["steady"], "wall"), _median(big["bare"], "wall")
    cpu_per = _median(big["steady"], "cpu") / count * 1000
    rss = cold["run_hwm_kib"] / 1024 if cold else big["memory"]["VmHWM"] / 1024
    rows = [
        (
            "API calls per steady pass",
            f"ListServices {pages} + ListTimeSeries {len(fixture.SIGNALS)}",
            _calls(big["steady"]),
            steady_calls == expected,
        ),
        ("pass wall / bare fetch", "≤ 1.5×", f"{wall / bare:.2f}×", wall / bare <= 1.5),
        ("controller CPU per service per pass", "< 0.5 ms", f"{cpu_per:.3f} ms", cpu_per < 0.5),
        ("peak RSS", "< 150 MB", f"{rss * 1.048576:.1f} MB ({rss:.1f} MiB)", rss * 1.048576 < 150),
    ]
    if cold:
        seconds = cold["first_pass_s"]
        rows.append(("cold start to first pass", "< 3 s", f"{seconds:.2f} s", seconds < 3))
    print(f"\n## Targets at {count:,} services (steady state)")
    print("| target | wanted | measured | met |")
    print("|---|---|---|---|")
    for what, wanted, measured, met in rows:
        print(f"| {what} | {wanted} | {measured} | {'yes' if met else 'NO'} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sizes", nargs="*", type=int, default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=9, help="steady passes and bare fetches per size")
    parser.add_argument("--naive-rounds", type=int, default=2, help="naive fetches per size")
    parser.add_argument("--drifted", type=int, default=3, help="passes after a 10 %% drift per size")
    parser.add_argument("--cold-starts", type=int, default=3, help="`run` cold starts (0: skip)")
    args = parser.parse_args()
    print(
        f"# fleet benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )
    results = []
    for count in args.sizes:
        print(f"measuring {count} services …", file=sys.stderr, flush=True)
        results.append(measure_fleet(count, args.rounds, args.naive_rounds, args.drifted))
    cold = cold_start(max(args.sizes), args.cold_starts) if args.cold_starts else None
    speed = emulator_speed.measure(args.sizes)
    report(results, cold, speed)


if __name__ == "__main__":
    main()
