"""The soak's verdict and its table: the checks over the evidence gathered, and the counts, printed.

Owns turning what the run saw into violations (each one line, never with a secret in it) and the table
of counts. Counters come from the controller's `/metrics` (summed over every process the soak started,
each at its last scrape) and from the emulator's `/v1/calls`, `/v1/faults` and `/v1/writes`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from soak_checks import Samples, canaries, controller_writes, escalations, unowned_changes

__all__ = ["report"]


class _Run(Protocol):
    """What the report reads of a `soak.Soak`."""

    args: Any
    fleet: Any
    violations: list[str]
    counts: Counter[str]
    scrapes: list[Samples]
    logs: list[list[str]]
    images: dict[str, str]
    foreign: dict[str, dict[str, str]]
    breached: set[str]
    calls_under_faults: int

    def bound(self) -> float: ...


def _survivors(run: _Run, live: dict[str, dict[str, Any]]) -> list[str]:
    """Every image and foreign env var set out of band is still there, as set."""
    found = []
    for name, image in sorted(run.images.items()):
        containers = live[name].get("template", {}).get("containers", [])
        if not containers or containers[0].get("image") != image:
            found.append(f"{name}: the image set out of band ({image}) did not survive")
    for name, variables in sorted(run.foreign.items()):
        containers = live[name].get("template", {}).get("containers", [])
        env = {e["name"]: e.get("value") for e in (containers[0].get("env", []) if containers else [])}
        for variable, value in sorted(variables.items()):
            if env.get(variable) != value:
                found.append(f"{name}: the foreign env var {variable} set out of band did not survive")
    return found


def _escalation_violations(run: _Run, writes: list[dict[str, Any]]) -> list[str]:
    found = []
    latched = escalations(writes)
    for state in run.fleet.services:
        times, breached = latched.get(state.name, 0), state.name in run.breached
        if breached and times != 1:
            found.append(f"{state.name}: its signal breached; escalated {times} time(s), not once")
        if not breached and times:
            found.append(f"{state.name}: escalated {times} time(s) with no breach")
    return found


def _secret_violations(run: _Run, status: Any) -> list[str]:
    """No log line, and not the final /status, holds a secret; no traceback or crashed pass."""
    found = []
    for process, lines in enumerate(run.logs):
        for number, line in enumerate(lines, 1):
            kinds = sorted({secret.split("-", 1)[0] for secret in run.fleet.secrets if secret in line})
            if kinds:
                found.append(f"controller-{process}.log:{number} holds a secret ({', '.join(kinds)})")
            if "Traceback" in line or '"pass_crashed"' in line:
                found.append(f"controller-{process}.log:{number}: {line.strip()[:160]}")
    text = repr(status)
    if any(secret in text for secret in run.fleet.secrets):
        found.append("/status holds a secret")
    return found


def _misjudged(run: _Run) -> list[str]:
    """The soak injects only transient faults: a permanent error or a failed escalation misjudges one."""
    found = []
    for process, lines in enumerate(run.logs):
        for number, line in enumerate(lines, 1):
            if '"error_kind": "permanent"' in line or '"escalation_failed"' in line:
                found.append(f"controller-{process}.log:{number}: {line.strip()[:200]}")
    return found


def report(
    run: _Run, evidence: dict[str, Any], converged: float | None, elapsed: float, workdir: Path
) -> int:
    """Print the checks and the table, and write them to `workdir/summary.json`; 0 when no check found a
    violation, else 1."""
    writes = evidence["writes"]
    checks = {
        "the controller never exited on its own": [v for v in run.violations if "exited" in v],
        f"every service converged within two intervals ({run.bound():.1f} s) after the faults stopped": [
            v for v in run.violations if "converge" in v
        ],
        "no change it stored touched a field it does not own": unowned_changes(writes),
        "every image and foreign env var set out of band survived": _survivors(run, evidence["live"]),
        "each service whose signal breached escalated exactly once, no other": _escalation_violations(
            run, writes
        ),
        "no part of an invalid desired file was applied": canaries(writes),
        "every injected fault was judged transient (no permanent error, no failed escalation)": _misjudged(
            run
        ),
        "no log line holds a secret; no traceback, no crashed pass": _secret_violations(
            run, evidence["status"]
        ),
    }
    violations = [v for found in checks.values() for v in found]
    args = run.args
    print(
        f"soak: {args.services} services, {args.duration:.0f} s of faults ({args.fault_share:.0%} of calls), "
        f"interval {args.interval:g} s, seed {args.seed}; {elapsed:.0f} s in all; logs in {workdir}"
    )
    for check, found in checks.items():
        print(f"  {'ok  ' if not found else 'FAIL'} {check}")
        for line in found[:20]:
            print(f"         {line}")
        if len(found) > 20:
            print(f"         … and {len(found) - 20} more")
    print()
    table = _table(run, evidence, converged, len(violations))
    for label, value, note in table:
        print(f"  {label:<24} {value:>8}  {note}")
    summary = {
        "checks": {check: found for check, found in checks.items()},
        "table": {label: {"value": value, "note": note} for label, value, note in table},
        "counts": dict(run.counts),
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 1 if violations else 0


def _table(
    run: _Run, evidence: dict[str, Any], converged: float | None, violations: int
) -> list[tuple[str, str, str]]:
    def total(name: str, **labels: str) -> int:
        return int(sum(s.total(name, **labels) for s in run.scrapes))

    def by(name: str, label: str) -> Counter[str]:
        found: Counter[str] = Counter()
        for scrape in run.scrapes:
            found.update(scrape.by(name, label))
        return found

    def spelled(counter: Counter[str] | dict[str, int]) -> str:
        return ", ".join(f"{key} {value}" for key, value in sorted(counter.items()) if value) or "-"

    injected: Counter[str] = Counter()
    for codes in evidence["injected"].values():
        injected.update(codes)
    passes, retries = (
        by("cloudrun_reconciler_passes_total", "result"),
        by("cloudrun_reconciler_retries_total", "reason"),
    )
    update = "UpdateService"
    conflicts = sum(
        total("cloudrun_reconciler_api_calls_total", method=update, code=code)
        for code in ("ABORTED", "FAILED_PRECONDITION")
    )
    injected_aborts = evidence["injected"].get(update, {}).get("ABORTED", 0)
    ours = controller_writes(evidence["writes"])
    edits = {k.removeprefix("out-of-band "): v for k, v in run.counts.items() if k.startswith("out-of-band")}
    holds = sum(len(s.get("flapGuard") or []) for s in evidence["status"].get("services", []))
    return [
        (
            "passes",
            str(sum(passes.values())),
            f"{spelled(passes)}; {len(run.scrapes)} controller process(es)",
        ),
        (
            "faults injected",
            str(sum(injected.values())),
            f"{spelled(injected)}; of {run.calls_under_faults} calls of the faulted methods",
        ),
        ("retries", str(sum(retries.values())), spelled(retries)),
        (
            "conflicts",
            str(conflicts),
            f"UpdateService ABORTED as the controller saw it; {injected_aborts} injected",
        ),
        (
            "applies",
            str(total("cloudrun_reconciler_applies_total", result="applied")),
            f"{total('cloudrun_reconciler_applies_total', result='failed')} failed; "
            f"{len(ours)} changes stored by the controller",
        ),
        (
            "escalations",
            str(total("cloudrun_reconciler_escalations_total", result="escalated")),
            f"{sum(escalations(evidence['writes']).values())} latch writes; {len(run.breached)} breached",
        ),
        ("out-of-band edits", str(sum(edits.values())), spelled(edits)),
        (
            "desired-file edits",
            str(run.counts["desired edits valid"] + run.counts["desired edits invalid"]),
            f"valid {run.counts['desired edits valid']}, invalid {run.counts['desired edits invalid']}",
        ),
        ("sqlite error bursts", str(run.counts["sqlite error bursts"]), ""),
        ("kills", str(run.counts["kills"]), f"{run.counts['kills mid-apply']} with an update in flight"),
        ("flap-guard holds", str(holds), "fields left alone by design at the end"),
        (
            "converged after",
            "-" if converged is None else f"{converged:.1f} s",
            f"the faults stopped, with {run.counts['drifted when the faults stopped']} service(s) drifted;"
            f" bound {run.bound():.1f} s",
        ),
        ("violations", str(violations), "must be 0"),
    ]
