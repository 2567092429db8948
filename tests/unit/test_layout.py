"""The layout holds: clients never import the server, the server's packages form layers,
and no module outgrows a page or two (see docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"


def modules(folder: str) -> list[Path]:
    return sorted((PROJECT / folder).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module a file imports (absolute imports; the project uses no others)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending(folder: str, allowed) -> list[str]:
    """Imports of rpm.server modules from folder that `allowed(module)` refuses."""
    return [
        f"{path.relative_to(PROJECT)} imports {name}"
        for path in modules(folder)
        for name in imported(path)
        if name.startswith("rpm.server") and not allowed(name)
    ]


def test_ruff_refuses_a_tui_module_that_imports_the_server():
    probe = "from rpm.server.procs.identity import same_start\n\nprint(same_start)\n"
    result = subprocess.run(
        [str(RUFF), "check", "--stdin-filename", "tui/probe.py", "-"],
        input=probe,
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "TID251" in result.stdout, result.stdout


@pytest.mark.parametrize("folder", ["tui", "rpmctl", "bench"])
def test_clients_import_only_the_client_side_package(folder):
    assert offending(folder, lambda name: False) == []


def test_rpmctl_and_rpm_tui_do_not_import_each_other():
    crossing = [
        f"{path.relative_to(PROJECT)} imports {name}"
        for folder, other in (("rpmctl", "tui"), ("tui", "rpmctl"))
        for path in modules(folder)
        for name in imported(path)
        if name == other or name.startswith(other + ".")
    ]
    assert crossing == []


def test_the_client_side_package_never_imports_the_server():
    top = [path for path in modules("rpm") if path.parent == PROJECT / "rpm"]
    assert [str(p) for p in top for n in imported(p) if n.startswith("rpm.server")] == []


def test_procs_is_below_managed_and_both_below_the_server():
    assert offending("rpm/server/procs", lambda n: n.startswith("rpm.server.procs")) == []
    below_server = ("rpm.server.managed", "rpm.server.procs")
    assert offending("rpm/server/managed", lambda n: n.startswith(below_server)) == []


def test_no_module_is_over_400_lines():
    long = [
        f"{path.relative_to(PROJECT)}: {lines}"
        for folder in ("rpm", "tui", "rpmctl", "bench", "twisted")
        for path in modules(folder)
        if (lines := len(path.read_text().splitlines())) > 400
    ]
    assert long == []
