"""Real processes for end-to-end tests: the installed console script, the standalone emulator, `run`.

Each helper waits for a process by reading what it prints, with a bounded deadline, never by sleeping a
fixed time; each one ends its process on the way out. Nothing here needs pytest: `benchmarks/soak.py`
drives the same processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "cloudrun-reconciler"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "controller"]
SEED = ROOT / "emulator" / "seeds" / "cagent-api-as-found.yaml"


@contextmanager
def standalone(*options: str) -> Iterator[tuple[str, list[str]]]:
    """`cloudrun-reconciler emulator` in its own process; yields its host:port and the lines it printed."""
    process = subprocess.Popen(
        [*COMMAND, "emulator", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("export CLOUD_RUN_EMULATOR_HOST="):
                break
        assert lines and lines[-1].startswith("export "), (
            process.stderr.read() if process.stderr else "no address"
        )
        yield lines[-1].strip().split("=", 1)[1], lines
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def admin_address(lines: list[str]) -> str:
    """The control endpoint's host:port, from what `emulator --admin-port` printed."""
    return next(line.split("http://", 1)[1].split("/", 1)[0] for line in lines if "control endpoint" in line)


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One request; the status and the body (JSON decoded when it is JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def eventually(check: Callable[[], Any], what: str, deadline: float = 30.0) -> Any:
    """Poll `check` until it returns something true, for at most `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        try:
            found = check()
        except (OSError, urllib.error.URLError):
            found = None
        if found:
            return found
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Running:
    """`cloudrun-reconciler run` in its own process, its stderr collected line by line."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [*COMMAND, "run", "--port", "0", "--host", "127.0.0.1", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.lines: list[str] = []
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()
        started = eventually(self._started, "the controller to listen")
        self.url = f"http://127.0.0.1:{started['port']}"

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def _started(self) -> dict[str, Any] | None:
        if self.process.poll() is not None:
            raise AssertionError(f"run exited {self.process.returncode}: {''.join(self.lines)}")
        for line in list(self.lines):
            if '"controller_started"' in line:
                return json.loads(line)  # type: ignore[no-any-return]
        return None

    def get(self, path: str) -> tuple[int, Any]:
        return http("GET", self.url + path)

    def kill(self) -> int:
        """SIGKILL, as an instance replaced mid-write dies: nothing runs on the way out."""
        self.process.kill()
        code = self.process.wait(timeout=10)
        self._drain.join(5)
        return code

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, as Cloud Run sends it; the exit code (the process must be gone within `timeout`)."""
        self.process.terminate()
        code = self.process.wait(timeout=timeout)
        self._drain.join(5)
        return code

    def log(self) -> str:
        return "".join(self.lines)
