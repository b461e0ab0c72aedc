"""Every gcloud command this repository gives, run through the real Google Cloud CLI when one is installed.

The commands: what deploy/setup.sh issues and prints, as tests/test_deploy.py records it (a first run and a
second one, with the log-metric role and the CI identities, and the service YAML it hands `run services
replace`); the workflow's sync step as tests/test_gitops.py records it; the README's (inline code and `sh`
blocks, placeholders filled in); and the one the plan prints for pinned traffic.

Offline and without an account: each command runs with a throwaway empty CLOUDSDK_CONFIG and HOME, no
account (`CLOUDSDK_CORE_ACCOUNT` empty), no GCE metadata lookup (which on a Google VM would hand gcloud the
VM's account), no update check or usage report, and every HTTP(S) request pointed at a closed local port.
`CLOUDSDK_AUTH_DISABLE_CREDENTIALS` is deliberately not set: with it gcloud skips the account check and
sends the request unauthenticated. gcloud parses its arguments and resolves the resources they name before
it looks for credentials (`run services replace` also reads its YAML into Cloud Run's Service message:
field names and types, not annotation values), so a well-formed command stops at "You do not currently
have an active account selected" (exit 1). An unknown flag, a bad value or an invalid choice exits 2; a
resource it cannot name (no project) or a service YAML field Cloud Run does not have exits 1 with another
message. Both are failures here. (`iam roles create --file` and `storage cp` read their files only later.)

A mention, command words only (`gcloud run deploy` in prose, `gcloud auth login`), is looked up with
`--help`: the command exists. Nothing under `auth`, `config`, `components` or `init` is ever run.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.plan import traffic_notes
from tests.conftest import ROOT
from tests.recorders import GCLOUD_FLAGS, GLOBAL_FLAGS, Recorded
from tests.test_deploy import PLACEHOLDER, SERVICE, VALUES, run_setup
from tests.test_diff import observed, spec
from tests.test_gitops import run_blocks, run_step

GCLOUD = shutil.which("gcloud")
ACCOUNT_WANTED = "You do not currently have an active account selected"
NEVER_RUN = frozenset({"auth", "config", "components", "init"})
CLOSED_PORT = "http://127.0.0.1:9"  # discard: nothing listens, a request fails at once
SYNC_STEP = "Sync to the controller's bucket"
# The README's placeholders, filled in as a reader would (the values tests/test_deploy.py deploys with).
FILLED = {
    "PROJECT_ID": VALUES["PROJECT_ID"],
    "PROJECT_NUMBER": "123456789012",
    "REGION": "us-central1",
    "SERVICE": "cagent-api",
    "CONFIG_BUCKET": VALUES["CONFIG_BUCKET"],
    "POOL": "github",
    "OWNER": "octo-org",
    "REPO": "infra",
}
UNFILLED = re.compile(r"\b[A-Z][A-Z0-9_]{2,}\b")
FILTER_WORDS = frozenset({"AND", "OR", "NOT"})  # Cloud Logging's filter language, not placeholders
COMMAND_WORD = re.compile(r"[a-z][a-z0-9-]*")
SPAN = re.compile(r"`(gcloud [^`]+)`")
PRINTED = re.compile(r"\$\((gcloud [^)]*)\)|(?:^|: )(gcloud .*)$", re.MULTILINE)


@dataclass(frozen=True)
class Command:
    """One gcloud command line (without `gcloud`), where it runs, and where the repository gives it."""

    args: tuple[str, ...]
    origin: str
    cwd: Path = ROOT

    @property
    def mention(self) -> bool:
        """Command words only (no flag, no value), or a group that logs in or configures: only looked up."""
        return all(COMMAND_WORD.fullmatch(arg) for arg in self.args) or self.args[0] in NEVER_RUN

    @property
    def argv(self) -> list[str]:
        """What runs: the command itself, or for a mention its command words and `--help`."""
        if not self.mention:
            return list(self.args)
        return [*(arg for arg in self.args if COMMAND_WORD.fullmatch(arg)), "--help"]


def gcloud_or_skip() -> str:
    if GCLOUD is None:
        pytest.skip("gcloud is not on PATH: install the Google Cloud CLI to check the commands against it")
    return GCLOUD


def offline_environment(home: Path) -> dict[str, str]:
    """An environment in which gcloud has no account, no credentials and no way to the network."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "CLOUDSDK_CORE_ACCOUNT": "",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_METRICS_ENVIRONMENT": "cloudrun-reconciler-tests",  # else it probes for GCE to name one
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        "BOTO_CONFIG": os.devnull,  # `gcloud storage` reads a boto file, which can hold keys
        "NO_PROXY": "",
        "no_proxy": "",
    }
    env |= {name: CLOSED_PORT for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")}
    if "CLOUDSDK_PYTHON" in os.environ:  # which interpreter runs gcloud, nothing else
        env["CLOUDSDK_PYTHON"] = os.environ["CLOUDSDK_PYTHON"]
    return env


def problem(gcloud: str, command: Command) -> str | None:
    """Why gcloud refused the command before wanting an account, or None when it got that far."""
    with tempfile.TemporaryDirectory() as home:
        result = subprocess.run(
            [gcloud, *command.argv],
            cwd=command.cwd,
            env=offline_environment(Path(home)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    if command.mention and result.returncode == 0:
        return None
    if not command.mention and result.returncode == 1 and ACCOUNT_WANTED in result.stderr:
        return None
    said = " | ".join(line.strip() for line in result.stderr.strip().splitlines()[:3])
    return f"{command.origin}: gcloud {shlex.join(command.argv)}: exit {result.returncode}: {said}"


def problems(commands: Iterable[Command]) -> list[str]:
    """The commands' problems, run in parallel (each gcloud start is most of a second of CPU)."""
    gcloud = gcloud_or_skip()
    unique = list(dict.fromkeys(commands))
    assert unique, "no gcloud commands found: the extraction is broken"
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return [found for found in pool.map(lambda command: problem(gcloud, command), unique) if found]


def filled(text: str, origin: str) -> str:
    text = re.sub(r"\b(" + "|".join(FILLED) + r")\b", lambda match: FILLED[match.group(1)], text)
    left = set(UNFILLED.findall(text)) - FILTER_WORDS
    assert not left, f"{origin}: placeholders with no value in FILLED: {sorted(left)} in {text!r}"
    return text


def words(text: str) -> tuple[str, ...]:
    """A shell command line's words after `gcloud`."""
    return tuple(shlex.split(text)[1:])


def readme_commands(text: str, origin: str, cwd: Path) -> list[Command]:
    """The gcloud commands in `sh` blocks (continued lines joined) and in inline code, placeholders filled."""
    commands, shell, prose = [], [], []
    fence: str | None = None
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
        elif fence in ("sh", "bash") and line.lstrip().startswith("gcloud "):
            shell.append(line.strip())
        elif fence not in ("sh", "bash"):
            prose.append(line)
    spans = [match.group(1) for match in SPAN.finditer("\n".join(prose))]
    for line in shell + spans:
        commands.append(Command(words(filled(line, origin)), origin, cwd))
    return commands


def recorded_commands(calls: Iterable[Recorded], origin: str, cwd: Path, scratch: Path) -> list[Command]:
    """The recorded gcloud calls; a file handed over and since deleted is written back from the record
    (one copy per content, so two runs that hand over the same file give the same command)."""
    commands = []
    for call in calls:
        if call.tool != "gcloud":
            continue
        args = []
        for arg in call.args:
            value = arg.split("=", 1)[-1]  # as the recorder keys the files it is handed
            if value in call.files and not Path(value).exists():
                digest = hashlib.sha256(call.files[value].encode()).hexdigest()[:16]
                copy = scratch / digest / Path(value).name
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_text(call.files[value])
                arg = arg[: len(arg) - len(value)] + str(copy)
            args.append(arg)
        commands.append(Command(tuple(args), origin, cwd))
    return commands


def printed_commands(output: str, origin: str) -> list[Command]:
    """The gcloud commands a script prints for its reader (`URL: gcloud ...`, `$(gcloud ...)`)."""
    return [
        Command(words(next(group for group in match.groups() if group)), origin)
        for match in PRINTED.finditer(output)
    ]


def service_yaml() -> str:
    """deploy/service.yaml with its placeholders filled in, as setup.sh hands it over."""
    return PLACEHOLDER.sub(lambda match: VALUES[match.group(1)], SERVICE.read_text())


def setup_commands(tmp_path: Path) -> list[Command]:
    commands = []
    for run, settings in {
        "first": {"MANAGE_LOG_METRIC": "1", "WITH_CI": "1"},
        "again": {"RECORDER_EXISTS": "1", "MANAGE_LOG_METRIC": "1", "WITH_CI": "1"},
    }.items():
        result, calls = run_setup(tmp_path / run, **settings)
        assert result.returncode == 0, result.stdout + result.stderr
        # every path it hands gcloud is absolute: the two runs' common commands are checked once
        commands += recorded_commands(calls, "deploy/setup.sh", ROOT, tmp_path / "files")
        commands += printed_commands(result.stdout, "deploy/setup.sh, printed")
    return commands


def test_the_check_refuses_what_gcloud_refuses_and_passes_what_it_takes(tmp_path: Path) -> None:
    """The check can fail: an unknown flag, a beta-only flag, an unnamed project, a service YAML field
    Cloud Run does not have, a missing command."""
    good = Command(("services", "enable", "run.googleapis.com", "--project=demo-project"), "good")
    typo = tmp_path / "service.yaml"
    typo.write_text(service_yaml().replace("containerPort:", "containerPorts:"))
    bad = [
        Command(
            ("services", "enable", "run.googleapis.com", "--project=demo-project", "--no-such-flag"), "flag"
        ),
        Command(("run", "services", "update", "cagent-api", "--max=3", "--region=us-central1"), "beta only"),
        Command(
            (
                *("iam", "service-accounts", "add-iam-policy-binding"),
                *("agents@demo-project.iam.gserviceaccount.com", "--member=user:dev@example.com"),
                "--role=roles/iam.serviceAccountUser",
            ),
            "no project",
        ),
        Command(("run", "services", "replace", str(typo), "--region=us-central1", "--project=p"), "yaml"),
        Command(("run", "deploi"), "no such command"),
    ]
    found = problems([good, Command(("run", "deploy"), "mention"), *bad])
    assert [line.split(":", 1)[0] for line in found] == [command.origin for command in bad], found
    assert "unrecognized arguments" in found[0] and "--max" in found[1] and "project" in found[2]
    assert "containerPorts" in found[3]


def test_every_command_setup_sh_issues_or_prints_is_valid_gcloud_usage(tmp_path: Path) -> None:
    gcloud_or_skip()
    commands = setup_commands(tmp_path)
    issued = {command.args[:3] for command in commands}
    assert ("run", "services", "replace") in issued and ("iam", "roles", "update") in issued
    assert problems(commands) == []


def test_every_gcloud_command_in_the_readme_is_valid_usage(tmp_path: Path) -> None:
    gcloud_or_skip()
    # where a reader runs them: beside the filled-in service.yaml and the desired file
    (tmp_path / "service.yaml").write_text(service_yaml())
    shutil.copy2(ROOT / "desired-state.yaml", tmp_path / "desired-state.yaml")
    commands = readme_commands((ROOT / "README.md").read_text(), "README.md", tmp_path)
    assert sum(not command.mention for command in commands) >= 6, commands
    assert problems(commands) == []


def test_the_workflow_gcloud_step_is_valid_usage(tmp_path: Path) -> None:
    gcloud_or_skip()
    assert [name for name, script in run_blocks() if "gcloud " in script] == [f"sync: {SYNC_STEP}"]
    result, calls = run_step(tmp_path, "sync", SYNC_STEP, CONFIG_BUCKET=VALUES["CONFIG_BUCKET"])
    assert result.returncode == 0, result.stderr
    commands = recorded_commands(
        calls, "examples/github-actions/desired-state.yml", tmp_path / "checkout", tmp_path
    )
    assert len(commands) == 1 and problems(commands) == []


def test_the_command_the_plan_gives_for_pinned_traffic_is_valid_usage() -> None:
    gcloud_or_skip()
    pinned = observed(latest_ready_revision="cagent-api-00002", traffic=(("cagent-api-00001", 100),))
    (note,) = traffic_notes(spec(timeout="1h"), pinned)
    commands = [Command(words(match.group(1)), "controller/plan.py") for match in SPAN.finditer(note)]
    assert len(commands) == 1 and problems(commands) == []


def completion_tree(gcloud: str) -> Mapping[str, Any]:
    """gcloud's own command tree: every command and its flags, as the installed SDK ships it."""
    tree = Path(gcloud).resolve().parent.parent / "data" / "cli" / "gcloud_completions.py"
    if not tree.exists():
        pytest.skip(f"this gcloud ships no command tree at {tree}")
    value = ast.literal_eval(tree.read_text().split("STATIC_COMPLETION_CLI_TREE =", 1)[1])
    assert isinstance(value, dict)
    return value


def test_the_recorders_flag_table_lists_only_flags_the_installed_gcloud_has() -> None:
    tree = completion_tree(gcloud_or_skip())
    assert set(tree["flags"]) >= GLOBAL_FLAGS, sorted(GLOBAL_FLAGS - set(tree["flags"]))
    unknown = {}
    for path, flags in GCLOUD_FLAGS.items():
        node: Mapping[str, Any] | None = tree
        for word in path:
            node = node["commands"].get(word) if node else None
        if node is None:
            unknown[" ".join(path)] = ["(no such command)"]
        elif flags - set(node["flags"]):
            unknown[" ".join(path)] = sorted(flags - set(node["flags"]))
    assert unknown == {}


def test_a_mention_or_a_login_is_only_looked_up_never_run() -> None:
    """`gcloud auth login` and prose mentions are asked for `--help`; so is `auth` with flags."""
    assert Command(("auth", "login"), "x").argv == ["auth", "login", "--help"]
    assert Command(("auth", "login", "--no-launch-browser"), "x").argv == ["auth", "login", "--help"]
    assert Command(("storage", "cp"), "x").argv == ["storage", "cp", "--help"]
    assert Command(("storage", "cp", "a.yaml", "gs://b/a.yaml"), "x").argv == [
        "storage",
        "cp",
        "a.yaml",
        "gs://b/a.yaml",
    ]
    assert Command(("run", "deploy", "svc", "--image=i"), "x").argv == ["run", "deploy", "svc", "--image=i"]
