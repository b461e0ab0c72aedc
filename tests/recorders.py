"""Stand-ins for the two command-line tools these machines cannot reach Google or GitHub with: `gcloud`
and `gh`. Each one records its arguments (and the files it is handed) as a JSON line and succeeds, so a
test can run a script as written and read back exactly which commands it issued.

They replace no Google client library: the controller itself always runs for real, against `emulator/`.
The gcloud usage a script may issue is checked against `GCLOUD_FLAGS`, the flags each command's page
in the gcloud reference lists. Where the Google Cloud CLI is installed, tests/test_gcloud_usage.py holds
the table to the installed gcloud's own command tree and runs every recorded command through gcloud.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# command path → the flags its reference page lists (gcloud-wide flags are in GLOBAL_FLAGS).
GCLOUD_FLAGS: dict[tuple[str, ...], frozenset[str]] = {
    ("services", "enable"): frozenset({"--async"}),
    ("iam", "service-accounts", "describe"): frozenset(),
    ("iam", "service-accounts", "create"): frozenset({"--description", "--display-name"}),
    ("iam", "service-accounts", "add-iam-policy-binding"): frozenset(
        {"--member", "--role", "--condition", "--condition-from-file"}
    ),
    ("iam", "roles", "describe"): frozenset({"--organization"}),
    ("iam", "roles", "create"): frozenset(
        {"--organization", "--file", "--description", "--permissions", "--stage", "--title"}
    ),
    ("iam", "roles", "update"): frozenset(
        {
            "--organization",
            "--file",
            "--add-permissions",
            "--description",
            "--permissions",
            "--remove-permissions",
            "--stage",
            "--title",
        }
    ),
    ("projects", "add-iam-policy-binding"): frozenset(
        {"--member", "--role", "--condition", "--condition-from-file"}
    ),
    ("storage", "buckets", "describe"): frozenset({"--additional-headers", "--raw"}),
    ("storage", "buckets", "create"): frozenset(
        {
            "--location",
            "--uniform-bucket-level-access",
            "--public-access-prevention",
            "--default-storage-class",
            "--soft-delete-duration",
        }
    ),
    ("storage", "buckets", "add-iam-policy-binding"): frozenset(
        {"--member", "--role", "--condition", "--condition-from-file"}
    ),
    ("storage", "cp"): frozenset({"--cache-control", "--content-type", "--if-generation-match"}),
    ("artifacts", "repositories", "describe"): frozenset({"--location"}),
    ("artifacts", "repositories", "create"): frozenset(
        {"--location", "--repository-format", "--description", "--async"}
    ),
    ("builds", "submit"): frozenset({"--region", "--tag", "--config", "--async"}),
    ("run", "services", "replace"): frozenset({"--region", "--async", "--dry-run"}),
}
GLOBAL_FLAGS = frozenset({"--project", "--quiet", "--format", "--account", "--verbosity"})

_RECORDER = '''#!{python}
"""A recording stand-in for `{name}` (tests/recorders.py)."""
import json, os, sys
args = sys.argv[1:]
entry = {{"tool": "{name}", "args": args, "files": {{}}}}
for arg in args:
    value = arg.split("=", 1)[-1]
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as handle:
            entry["files"][value] = handle.read()
with open(os.environ["RECORDER_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(entry) + "\\n")
# Unless RECORDER_EXISTS is set, nothing exists yet: every `describe` fails, so a script creates.
sys.exit(1 if "describe" in args and not os.environ.get("RECORDER_EXISTS") else 0)
'''


@dataclass(frozen=True)
class Recorded:
    tool: str
    args: list[str]
    files: dict[str, str]

    @property
    def command(self) -> tuple[str, ...]:
        """The command path: the leading words before the first flag or positional value."""
        known = max(
            (path for path in GCLOUD_FLAGS if tuple(self.args[: len(path)]) == path), key=len, default=()
        )
        return known or tuple(self.args[:2])

    @property
    def flags(self) -> set[str]:
        return {arg.split("=", 1)[0] for arg in self.args if arg.startswith("--")}


def install(bin_dir: Path, *names: str) -> Path:
    """Put recording stand-ins for `names` into `bin_dir`; return the log they append to."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = bin_dir / name
        path.write_text(_RECORDER.format(python=sys.executable, name=name))
        path.chmod(0o755)
    log = bin_dir / "recorded.jsonl"
    log.touch()
    return log


def environment(bin_dir: Path, log: Path, **extra: str) -> dict[str, str]:
    """The environment a script runs in: the stand-ins first on PATH, then this venv, then the system."""
    venv = str(Path(sys.executable).parent)
    path = os.pathsep.join([str(bin_dir), venv, os.environ.get("PATH", "/usr/bin:/bin")])
    return {**os.environ, "PATH": path, "RECORDER_LOG": str(log), **extra}


def recorded(log: Path) -> list[Recorded]:
    return [Recorded(**json.loads(line)) for line in log.read_text().splitlines() if line.strip()]


def unknown_gcloud_usage(calls: list[Recorded]) -> list[str]:
    """Each gcloud call whose command or flags the reference table does not list, described."""
    problems = []
    for call in calls:
        if call.tool != "gcloud":
            continue
        allowed = GCLOUD_FLAGS.get(call.command)
        if allowed is None:
            problems.append(f"gcloud {' '.join(call.args)}: command not in the reference table")
        elif call.flags - allowed - GLOBAL_FLAGS:
            problems.append(f"gcloud {' '.join(call.command)}: unknown {sorted(call.flags - allowed)}")
    return problems
