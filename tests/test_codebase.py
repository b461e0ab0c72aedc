"""The codebase keeps its shape: lint and types clean, and the import boundaries of DESIGN.md hold."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

ADAPTERS = {
    "controller/cloudrun.py",
    "controller/cloudrun_shape.py",
    "controller/demo.py",
    "controller/signals.py",
}  # demo only starts the emulator in-process
# The pure core: no I/O, no clock, no threads, no adapters.
PURE = {"diff.py", "plan.py", "escalation.py", "schedule.py", "flap.py", "model.py", "show.py", "series.py"}
IMPURE_IMPORTS = {"os", "time", "threading", "socket", "subprocess", "random", "urllib", "http"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("controller"), ids=lambda p: p.name)
def test_only_adapter_modules_import_google(path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    google = {name for name in _imports(path) if name.split(".")[0] in ("google", "grpc")}
    if relative not in ADAPTERS:
        assert not google, f"{relative} imports {google}: only adapters may"


@pytest.mark.parametrize("name", sorted(PURE))
def test_the_pure_core_does_no_io(name: str) -> None:
    imports = _imports(ROOT / "controller" / name)
    outside = {
        i for i in imports if i.split(".")[0] in IMPURE_IMPORTS or i.split(".")[0] in ("google", "grpc")
    }
    shell = {i for i in imports if i.startswith("controller.") and f"{i.split('.')[1]}.py" not in PURE}
    assert not outside and not shell, f"{name} imports {outside | shell}"


@pytest.mark.parametrize("path", _modules("desired"), ids=lambda p: p.name)
def test_desired_imports_nothing_from_controller_or_google(path: Path) -> None:
    roots = {name.split(".")[0] for name in _imports(path)}
    assert not roots & {"controller", "google", "grpc", "emulator"}


@pytest.mark.parametrize("path", _modules("emulator"), ids=lambda p: p.name)
def test_the_emulator_imports_nothing_from_controller(path: Path) -> None:
    assert "controller" not in {name.split(".")[0] for name in _imports(path)}


@pytest.mark.parametrize(
    "path",
    [*_modules("controller"), *_modules("desired"), *_modules("emulator")],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_every_module_says_what_it_owns(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no module docstring"


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_lint_and_types_are_clean(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
