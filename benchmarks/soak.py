"""Soak: `cloudrun-reconciler run` against the standalone emulator under faults, edits and kills.

For `--duration` seconds (default 60) the controller runs as a subprocess over a fleet of `--services`
services, while this harness, from one seeded generator:
  - fails about `--fault-share` (10 %) of the API calls of every method the controller uses with
    UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED or INTERNAL, and makes every operation take two polls;
  - edits services out of band: deploys with new images that reset owned fields, console edits of the
    maximum, foreign env vars, a pasted password;
  - edits the desired file, every other edit invalid (each kind people get wrong, with a canary);
  - feeds request counts, and SQLite storage-error bursts for half the services that declare an
    escalation (windows of 60 s, judged one at a time, read 1 s back);
  - kills the controller with SIGKILL while an update is in flight, and starts it again.
Then the faults stop, the desired file is left valid, and it checks: the controller never exited on its
own; every service converged within two intervals; no change the controller stored touched a field it
does not own, and every image and foreign env var set out of band survived; each service whose signal
breached escalated exactly once, and no other; no part of an invalid desired file was applied; no log
line holds a secret. It prints a table of counts read from the controller's /metrics and the emulator's
/v1 endpoints, and exits 1 on any violation.

Run: .venv/bin/python benchmarks/soak.py [--duration 60] [--services 30] [--seed 1] [--logs DIR]
(all options: --help; docs/soak.md has the figures of a run)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soak_checks import Samples, mismatches, unconverged
from soak_fleet import INVALID_KINDS, PROJECT, REGION, STORAGE_METRIC, Fleet, ServiceState
from soak_report import report

from desired import check_desired_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the process helpers the tests use
from tests.processes import Running, admin_address, http, standalone

FAULT_CODES = ["UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "INTERNAL"]
FAULTED = ["ListServices", "GetService", "UpdateService", "GetOperation", "ListTimeSeries", "GetLogMetric"]
STEP = 0.25  # seconds between the harness's looks at the world
JITTER = 0.1  # the controller stretches each interval by up to this share


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.rng = random.Random(args.seed)
        self.fleet = Fleet(args.services, self.rng)
        self.path = workdir / "desired-state.yaml"
        self.violations: list[str] = []
        self.counts: Counter[str] = Counter()
        self.scrapes: list[Samples] = []  # the last scrape of each controller process
        self.logs: list[list[str]] = []
        self.images: dict[str, str] = {}  # service → the image last set out of band
        self.foreign: dict[str, dict[str, str]] = {}  # service → foreign env vars set out of band
        self.breached: set[str] = set()
        self.admin = ""
        self.env: dict[str, str] = {}
        self.running: Running | None = None
        self.calls_under_faults = 0  # calls of the faulted methods served until the faults stopped

    # ---- processes -----------------------------------------------------------------------------

    def start_controller(self) -> None:
        interval = f"{self.args.interval}s"
        self.running = Running(
            *("--file", str(self.path), "--interval", interval, "--poll", "0.5s", "--manage-log-metric"),
            *("--signal-delay", "1s", "--flap-limit", str(self.args.flap_limit)),
            env=self.env,
        )
        self.logs.append(self.running.lines)
        self.scrapes.append(Samples())

    def scrape(self) -> None:
        assert self.running is not None
        try:
            status, text = self.running.get("/metrics")
        except OSError:
            return
        if status == 200 and isinstance(text, str):
            self.scrapes[-1] = Samples(text)

    def watch(self) -> None:
        """The controller must never exit on its own; if it does, say so and start it again."""
        assert self.running is not None
        code = self.running.process.poll()
        if code is not None:
            self.violations.append(f"the controller exited on its own with code {code}")
            self.start_controller()

    def kill_mid_apply(self) -> None:
        """Slow the updates, make one due, and SIGKILL the controller while it is in flight."""
        assert self.running is not None
        self.post("/v1/faults", {"method": "UpdateService", "latency": 1.5})
        self.edit_out_of_band("deploy")  # a deploy always resets owned fields: an update is due
        before = self.calls().get("UpdateService", 0)
        http("POST", f"{self.running.url}/reconcile")
        deadline = time.monotonic() + 3 * self.args.interval + 5
        while self.calls().get("UpdateService", 0) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        in_flight = self.calls().get("UpdateService", 0) > before
        self.scrape()
        self.running.kill()
        self.counts["kills"] += 1
        self.counts["kills mid-apply"] += in_flight
        self.post("/v1/faults", {"method": "UpdateService", "latency": 0.1})
        self.start_controller()

    # ---- the emulator ----------------------------------------------------------------------------

    def post(self, path: str, body: Any) -> Any:
        status, answer = http("POST", f"http://{self.admin}{path}", body)
        if status != 200:
            raise RuntimeError(f"POST {path}: {status} {answer}")
        return answer

    def get(self, path: str) -> Any:
        status, answer = http("GET", f"http://{self.admin}{path}")
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {answer}")
        return answer

    def calls(self) -> dict[str, int]:
        return self.get("/v1/calls")  # type: ignore[no-any-return]

    def live(self) -> dict[str, dict[str, Any]]:
        return {s["name"].rsplit("/", 1)[-1]: s for s in self.get("/v1/services")["services"]}

    def faults_on(self) -> None:
        for index, method in enumerate(FAULTED):
            share = {"method": method, "share": self.args.fault_share, "codes": FAULT_CODES}
            self.post("/v1/faults", {**share, "seed": self.args.seed * 100 + index})
        self.post("/v1/faults", {"method": "UpdateService", "latency": 0.1})
        self.post("/v1/settings", {"operation_polls": 2})

    def faults_off(self) -> None:
        self.post("/v1/faults", {"clear": True})
        self.calls_under_faults = sum(count for method, count in self.calls().items() if method in FAULTED)
        self.post("/v1/settings", {"operation_polls": 0})

    # ---- what others do --------------------------------------------------------------------------

    def edit_out_of_band(self, kind: str | None = None) -> None:
        for _ in range(3):  # an edit that meets a concurrent write is refused (etag): read again
            live = self.live()
            name = self.rng.choice(sorted(live))
            kind, body = self.fleet.out_of_band(live[name], kind)
            status, _ = http("POST", f"http://{self.admin}/v1/edit", body)
            if status == 200:
                self.counts[f"out-of-band {kind}"] += 1
                self.expect(name, body)
                return

    def expect(self, name: str, body: dict[str, Any]) -> None:
        """Remember what the edit set that the controller must leave: the image, foreign env vars."""
        for container in body.get("service", {}).get("template", {}).get("containers", [])[:1]:
            self.images[name] = container["image"]
            for variable in container.get("env", []):
                if variable["name"].startswith("FOREIGN_"):
                    self.foreign.setdefault(name, {})[variable["name"]] = variable["value"]

    def write_desired(self, text: str) -> None:
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, self.path)  # at once, as a git checkout swaps the file

    def edit_desired(self, valid: bool) -> None:
        if valid:
            self.write_desired(self.fleet.edit_valid())
            self.counts["desired edits valid"] += 1
        else:
            kind = self.rng.choice(INVALID_KINDS)
            self.write_desired(self.fleet.edit_invalid(kind))
            self.counts["desired edits invalid"] += 1

    def point(self, state: ServiceState, metric: str, value: int, live: dict[str, Any], **more: Any) -> None:
        revision = live.get("latestReadyRevision", "").rsplit("/", 1)[-1]
        labels = {"project_id": PROJECT, "location": REGION, "service_name": state.name}
        body = {
            "metric_type": metric,
            "value": value,
            "end": datetime.now(UTC).isoformat(),
            "resource_labels": {**labels, "revision_name": revision},
            **more,
        }
        self.post("/v1/points", body)

    def traffic(self) -> None:
        live = self.live()
        for state in self.fleet.escalating:
            self.point(
                state,
                "run.googleapis.com/request_count",
                10,
                live[state.name],
                metric_labels={"response_code_class": "2xx"},
            )

    def burst(self, state: ServiceState) -> None:
        """`disk I/O error` in the service's logs: above its storageErrors.maxCount of 0."""
        self.point(state, STORAGE_METRIC, 2, self.live()[state.name])
        self.breached.add(state.name)
        self.counts["sqlite error bursts"] += 1

    # ---- the run -------------------------------------------------------------------------------

    def chaos(self) -> None:
        """Faults, edits, bursts and kills until the duration is over."""
        duration, rng = self.args.duration, self.rng
        start = time.monotonic()
        chosen = rng.sample(self.fleet.escalating, max(1, len(self.fleet.escalating) // 2))
        bursts = sorted(
            (start + duration * rng.uniform(0.05, 0.45) + lag, index)
            for index, _ in enumerate(chosen)
            for lag in (0.0, duration * 0.25)  # a second burst once it is (or should be) escalated
        )
        count = max(1, round(duration / self.args.kill_every))
        kills = [start + duration * (k + 1) / (count + 1) for k in range(count)]
        next_edit, next_desired, next_traffic, valid = start, start + 2.0, start, True
        self.faults_on()
        while (now := time.monotonic()) < start + duration:
            self.watch()
            self.scrape()
            if now >= next_traffic:
                self.traffic()
                next_traffic = now + 3.0
            while bursts and bursts[0][0] <= now:
                self.burst(chosen[bursts.pop(0)[1]])
            if now >= next_edit:
                self.edit_out_of_band()
                next_edit = now + rng.expovariate(1 / self.args.edit_every)
            if now >= next_desired:
                self.edit_desired(valid)
                valid, next_desired = not valid, now + 2.5
            if kills and now >= kills[0]:
                kills.pop(0)
                self.kill_mid_apply()
            time.sleep(STEP)

    def converge(self) -> float | None:
        """Faults off, the last valid file back; seconds until every service is in sync, or None."""
        self.faults_off()
        self.write_desired(self.fleet.desired())
        desired = check_desired_text(self.fleet.desired(), str(self.path)).state
        stopped = time.monotonic()
        bound = self.bound()
        while True:
            self.watch()
            self.scrape()
            live, held = self.live(), self.held()
            drifted = unconverged(desired, live.values(), held)
            for state in self.fleet.services:  # the second opinion, read off the JSON
                wrong = [f for f in mismatches(state, live[state.name]) if not _held(f, held.get(state.name))]
                if wrong:
                    drifted.setdefault(state.name, []).extend(f"{f} (read directly)" for f in wrong)
            self.counts.setdefault("drifted when the faults stopped", len(drifted))
            if not drifted:
                return time.monotonic() - stopped
            if time.monotonic() - stopped > bound:
                for name, fields in sorted(drifted.items()):
                    self.violations.append(
                        f"{name} did not converge within {bound:.1f} s: {', '.join(fields)}"
                    )
                return None
            time.sleep(STEP)

    def bound(self) -> float:
        """Two intervals, each stretched by the jitter, and a second for each pass itself."""
        return 2 * (float(self.args.interval) * (1 + JITTER) + 1.0)

    def held(self) -> dict[str, set[str]]:
        """The fields the flap guard holds, as the controller reports them."""
        assert self.running is not None
        status, document = self.running.get("/status")
        if status != 200:
            return {}
        return {
            service["name"]: {hold["field"] for hold in service.get("flapGuard") or []}
            for service in document.get("services", [])
        }


def _held(field: str, paths: set[str] | None) -> bool:
    """Whether the flap guard holds the plan path that `field` (a name of `mismatches`) is read from."""
    words = {
        "timeout": "template.timeout",
        "scaling.minInstanceCount": "scaling.min_instance_count",
        "scaling.maxInstanceCount": "scaling.max_instance_count",
        "labels.tier": "labels[tier]",
    }
    wanted = words.get(field, f"env[{field[4:]}]" if field.startswith("env.") else field)
    return any(path == wanted or path.endswith(wanted) for path in paths or set())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults (60)")
    parser.add_argument("--services", type=int, default=30, help="services in the fleet (30)")
    parser.add_argument("--interval", type=float, default=3.0, help="the controller's interval, s (3)")
    parser.add_argument("--fault-share", type=float, default=0.1, help="share of calls failed (0.1)")
    parser.add_argument("--edit-every", type=float, default=0.7, help="mean s between out-of-band edits")
    parser.add_argument("--kill-every", type=float, default=20.0, help="s between SIGKILLs mid-apply (20)")
    parser.add_argument(
        "--flap-limit", type=int, default=3, help="the controller's --flap-limit (3); held fields are excused"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--logs", type=Path, default=None, help="keep the controller's logs here")
    args = parser.parse_args(argv)
    workdir = args.logs or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    soak = Soak(args, workdir)
    soak.write_desired(soak.fleet.desired())
    with standalone("--admin-port", "0") as (address, lines):
        soak.admin, soak.env = admin_address(lines), {**os.environ, "CLOUD_RUN_EMULATOR_HOST": address}
        soak.post("/v1/services", soak.fleet.seeds())
        soak.start_controller()
        started = time.monotonic()
        soak.chaos()
        converged = soak.converge()
        assert soak.running is not None
        status, document = soak.running.get("/status")
        writes = soak.get("/v1/writes?since=0")["writes"]
        evidence = {
            "writes": writes,
            "injected": soak.get("/v1/faults")["injected"],
            "calls": soak.calls(),
            "live": soak.live(),
            "status": document if status == 200 else {},
        }
        code = soak.running.stop()
        if code != 0:
            soak.violations.append(f"the controller exited {code} on SIGTERM, not 0")
        elapsed = time.monotonic() - started
    for index, lines_of in enumerate(soak.logs):
        (workdir / f"controller-{index}.log").write_text("".join(lines_of), encoding="utf-8")
    return report(soak, evidence, converged, elapsed, workdir)


if __name__ == "__main__":
    sys.exit(main())
