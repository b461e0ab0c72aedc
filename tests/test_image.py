"""The container image, checked without a Docker engine: the Dockerfile is lint-clean and says what the
deployment relies on, and its install steps, replayed outside Docker, give a controller that answers.

The replay reads the Dockerfile itself: the build stage's COPY sources make the build context, its RUN
commands run as written (with the image's paths moved under a temporary directory), and the final stage's
ENTRYPOINT starts under the final stage's ENV, against the standalone emulator.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT
from tests.test_cli import SEED, _standalone

DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
# Paths of the image that the replay moves under tmp_path: the wheel directory, the virtual environment,
# and the directory deploy/service.yaml mounts the desired file at.
IMAGE_PATHS = ("/wheels", "/opt/venv", "/config")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_stages(path: Path = DOCKERFILE) -> list[list[Instruction]]:
    """The instructions of each stage, continuation lines joined and comments dropped."""
    stages: list[list[Instruction]] = []
    logical = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line.rstrip().removesuffix("\\") + (" " if line.rstrip().endswith("\\") else "")
        if line.rstrip().endswith("\\"):
            continue
        keyword, _, arguments = logical.strip().partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(keyword.upper(), " ".join(arguments.split())))
    return stages


def arguments_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [instruction.arguments for instruction in stage if instruction.keyword == keyword]


def image_env(stage: list[Instruction]) -> dict[str, str]:
    """The ENV of a stage as the image's processes see it ($VAR references expanded in order)."""
    env: dict[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    for arguments in arguments_of(stage, "ENV"):
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            env[name] = re.sub(r"\$(\w+)", lambda match: env.get(match.group(1), ""), value)
    return env


def _hadolint(dockerfile: Path, config: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.exists(), f"no {HADOLINT}: install the test extra (pip install -e '.[test]')"
    return subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold=style", f"--config={config}", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_dockerfile_is_lint_clean(tmp_path: Path) -> None:
    """hadolint, strict: any finding down to style level fails, and no rule is ignored by a local config."""
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    result = _hadolint(DOCKERFILE, config)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same lint on the file run as root must fail: proof that the check above looked at something.
    as_root = tmp_path / "Dockerfile"
    as_root.write_text(re.sub(r"(?m)^USER .*$", "USER root", DOCKERFILE.read_text()))
    assert "DL3002" in _hadolint(as_root, config).stdout


def test_both_stages_use_one_slim_python_base_pinned_by_version() -> None:
    bases = [arguments_of(stage, "FROM")[0].split()[0] for stage in dockerfile_stages()]
    assert len(bases) == 2, "a build stage and a final stage"
    assert bases[0] == bases[1], "the final stage runs the virtual environment the build stage made"
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+", bases[0]), bases[0]


def test_the_final_stage_runs_the_controller_as_a_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    user = arguments_of(final, "USER")[-1]
    assert user.isdigit() and int(user) != 0, "a numeric, non-root uid"
    assert json.loads(arguments_of(final, "ENTRYPOINT")[-1]) == ["cloudrun-reconciler", "run"]
    env = image_env(final)
    assert env["PORT"] == "8080" and env["DESIRED_STATE_FILE"] == "/config/desired-state.yaml"


def test_the_final_stage_holds_only_the_built_environment() -> None:
    """No sources, wheels or test extra: the final stage copies the build stage's venv and nothing else."""
    build, final = dockerfile_stages()
    assert arguments_of(final, "COPY") == ["--from=build /opt/venv /opt/venv"]
    assert "AS build" in arguments_of(build, "FROM")[0]
    assert not any("[test]" in run for stage in (build, final) for run in arguments_of(stage, "RUN"))


def test_the_build_context_admits_what_the_build_stage_copies() -> None:
    kept = {
        line.strip()[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip().startswith("!")
    }
    assert set(_copied_sources(dockerfile_stages()[0])) <= kept


def _copied_sources(stage: list[Instruction]) -> list[str]:
    sources: list[str] = []
    for arguments in arguments_of(stage, "COPY"):
        words = [word for word in arguments.split() if not word.startswith("--")]
        sources.extend(word.rstrip("/") for word in words[:-1])
    return sources


def _replay_build(tmp_path: Path, stage: list[Instruction]) -> dict[str, Path]:
    """The build stage's COPY and RUN, outside Docker; returns where each image path ended up."""
    moved = {path: tmp_path / path.strip("/").replace("/", "-") for path in IMAGE_PATHS}
    context = tmp_path / "context"
    for source in _copied_sources(stage):
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(ROOT / source, context / source)
    for run in arguments_of(stage, "RUN"):
        for command in run.split(" && "):
            for image_path, local in moved.items():
                command = command.replace(image_path, str(local))
            words = shlex.split(command)
            if words[0] == "python":  # the base image's interpreter; here, the one running the tests
                command = shlex.join([sys.executable, *words[1:]])
            result = subprocess.run(
                command, shell=True, cwd=context, capture_output=True, text=True, timeout=540
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return moved


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _await_health(process: subprocess.Popen[str], url: str, deadline: float) -> int:
    """Poll `url` until it answers 200 or the deadline passes; waiting on the process between tries
    also notices an entrypoint that exits instead of serving."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return int(answer.status)
        except (urllib.error.URLError, ConnectionError):
            pass
        try:
            process.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
        return -1
    return 0


def test_the_image_install_steps_give_a_controller_that_answers_healthz(tmp_path: Path) -> None:
    """Wheel from the copied sources, a fresh venv, the entrypoint under the image's ENV: /healthz is 200."""
    build, final = dockerfile_stages()
    moved = _replay_build(tmp_path, build)
    config = moved["/config"]
    config.mkdir()
    shutil.copy2(ROOT / "desired-state.yaml", config / "desired-state.yaml")  # what the bucket mount holds

    env = image_env(final)
    for image_path, local in moved.items():
        env = {name: value.replace(image_path, str(local)) for name, value in env.items()}
    port = _free_port()
    env |= {"PORT": str(port), "HOME": str(tmp_path)}  # Cloud Run sets PORT; the rest is the image's
    entrypoint = json.loads(arguments_of(final, "ENTRYPOINT")[-1])
    executable = shutil.which(entrypoint[0], path=env["PATH"])
    assert executable and executable.startswith(str(moved["/opt/venv"])), "the entrypoint comes from the venv"

    with _standalone("--seed", str(SEED)) as (address, _):
        process = subprocess.Popen(
            [executable, *entrypoint[1:]],
            cwd=tmp_path,
            env=env | {"CLOUD_RUN_EMULATOR_HOST": address},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            status = _await_health(process, f"http://127.0.0.1:{port}/healthz", time.monotonic() + 60)
            assert status == 200, f"/healthz: {status}; {process.stderr.read() if status == -1 else ''}"
        finally:
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=30)
        assert process.returncode == 0, errors
        assert "controller_started" in errors and str(config / "desired-state.yaml") in errors
