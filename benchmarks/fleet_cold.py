"""Cold start of the product: `cloudrun-reconciler run` as a subprocess, from process start to first pass.

Against an emulator in this process holding the fleet of `fleet_fixture.py`, converged beforehand with
`cloudrun-reconciler apply` (a controller restarting on a fleet it already keeps). For each start: the time
from just before the process is spawned to the arrival of its `controller_started` and first
`pass_finished` log lines (read from its stderr as they come; `/readyz` is checked to answer 200 then),
the API calls of that first pass, and, after two more passes asked for with `POST /reconcile`, the run
process's VmHWM (its peak resident set, the emulator not included). Used by `benchmarks/fleet.py`.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fleet_fixture as fixture

from emulator import Emulator

CLI = str(Path(sys.executable).parent / "cloudrun-reconciler")
DEADLINE = 120.0


class _Log:
    """The run process's stderr, one JSON line at a time, each stamped with its arrival."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            arrived = time.perf_counter()
            try:
                event = json.loads(line)
            except ValueError:
                event = {"message": line.strip()}
            with self._changed:
                self.lines.append((arrived, event))
                self._changed.notify_all()

    def wait(self, message: str, count: int = 1) -> tuple[float, dict[str, Any]]:
        """The `count`-th line whose message is `message`, waiting for it up to the deadline."""
        end = time.monotonic() + DEADLINE
        with self._changed:
            while True:
                found = [entry for entry in self.lines if entry[1].get("message") == message]
                if len(found) >= count:
                    return found[count - 1]
                if not self._changed.wait(end - time.monotonic()):
                    raise TimeoutError(f"no {message!r} #{count} in the run log: {self.lines[-5:]}")


def _http(method: str, url: str) -> int:
    request = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def _one_start(server: Emulator, desired: Path, env: dict[str, str]) -> dict[str, Any]:
    before = Counter(server.store.calls)
    started = time.perf_counter()
    process = subprocess.Popen(
        [CLI, "run", "-f", str(desired), "--host", "127.0.0.1", "--port", "0", "--interval", "30s"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        log = _Log(process.stderr)
        up_at, up = log.wait("controller_started")
        first_at, first = log.wait("pass_finished")
        calls = Counter(server.store.calls)
        calls.subtract(before)
        base = f"http://127.0.0.1:{up['port']}"
        assert _http("GET", f"{base}/readyz") == 200
        for count in (2, 3):
            assert _http("POST", f"{base}/reconcile") == 202
            log.wait("pass_finished", count)
        hwm = _vm_hwm(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0, f"run exited {code}"
    return {
        "started_s": up_at - started,
        "first_pass_s": first_at - started,
        "pass_s": float(first["seconds"]),
        "result": first["result"],
        "hwm_kib": hwm,
        "calls": {method: n for method, n in sorted(calls.items()) if n},
    }


def cold_start(count: int, times: int) -> dict[str, Any]:
    """Median figures of `times` cold starts against a converged fleet of `count` services."""
    with tempfile.TemporaryDirectory() as tmp, Emulator() as server:
        fixture.seed(server, count, datetime.now(UTC))
        desired = Path(tmp, "desired-state.yaml")
        desired.write_text(fixture.desired_yaml(count))
        env = {**os.environ, "CLOUD_RUN_EMULATOR_HOST": server.address}
        subprocess.run([CLI, "apply", "-f", str(desired)], env=env, check=True, capture_output=True)
        samples = [_one_start(server, desired, env) for _ in range(times)]
    assert all(sample["result"] == "ok" for sample in samples), samples
    return {
        "count": count,
        "times": times,
        "started_s": statistics.median(s["started_s"] for s in samples),
        "first_pass_s": statistics.median(s["first_pass_s"] for s in samples),
        "first_pass_max_s": max(s["first_pass_s"] for s in samples),
        "pass_s": statistics.median(s["pass_s"] for s in samples),
        "run_hwm_kib": max(s["hwm_kib"] for s in samples),
        "calls": samples[0]["calls"],
    }


def print_cold(cold: dict[str, Any]) -> None:
    calls = ", ".join(f"{method} {n}" for method, n in cold["calls"].items())
    print(
        f"\n## Cold start of `cloudrun-reconciler run`, {cold['count']:,} services ({cold['times']} starts)"
    )
    print(
        "| to `controller_started` | to first `pass_finished` (median / max) | the first pass itself "
        "| its API calls | run process VmHWM after 3 passes |"
    )
    print("|---:|---:|---:|---|---:|")
    print(
        f"| {cold['started_s']:.2f} s | {cold['first_pass_s']:.2f} s / {cold['first_pass_max_s']:.2f} s | "
        f"{cold['pass_s']:.3f} s | {calls} | {cold['run_hwm_kib'] / 1024:.1f} MiB |"
    )
