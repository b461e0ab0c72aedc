"""The soak, short, as CI runs it: `benchmarks/soak.py` for 45 s of faults; any violation fails the build.

The soak is a whole-system run on real time (the controller and the emulator as processes): its checks are
about outcomes (converged, counts, what was stored), with generous bounds, never about how long a step
took. This test also asserts that the run did exercise what it claims, so an empty soak cannot pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.processes import ROOT


def test_the_short_soak_finds_no_violation(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--duration", "45", "--logs", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(not found for found in summary["checks"].values()), summary["checks"]
    counts = summary["counts"]
    assert counts["kills mid-apply"] >= 1 and counts["desired edits invalid"] >= 1
    assert counts["sqlite error bursts"] >= 1 and counts["out-of-band deploy"] >= 1
    table = summary["table"]
    assert int(table["faults injected"]["value"]) > 0 and int(table["applies"]["value"]) > 0
    assert table["violations"]["value"] == "0"
