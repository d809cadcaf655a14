"""The job-backend seam holds (DESIGN.md §2): what a command does never depends on which backend runs
it. cli.py and actions.py reach jobs only through backend.JobBackend; fleet.open_backend is the one
place that names a backend class, so a new backend is a branch there and options in cli.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from taoremote import fleet, hosts
from taoremote.jobs import DockerBackend
from taoremote.settings import Globals
from tests.unit.fakes import FakeExecutor, opener

PACKAGE = Path(__file__).resolve().parents[2] / "taoremote"
# those implementing backend.JobBackend
BACKEND_MODULES = {"jobs", "docker_launch", "slurm", "slurm_login", "slurm_submit"}


def _imports(module: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "taoremote":
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("taoremote."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("taoremote."))
    return names


@pytest.mark.parametrize("module", ["cli", "actions", "run", "info"])
def test_commands_never_import_a_backend_implementation(module: str) -> None:
    assert _imports(module) & BACKEND_MODULES == set()


def test_only_fleet_picks_a_backend() -> None:
    constructs = re.compile(r"(?<!class )\b[A-Z]\w*Backend\(")
    pickers = {
        p.stem
        for p in PACKAGE.glob("*.py")
        if p.stem not in BACKEND_MODULES and constructs.search(p.read_text())
    }
    assert pickers <= {"fleet", "slurm_doctor"}  # slurm_doctor probes a cluster, which only Slurm has
    assert "fleet" in pickers


def test_without_other_options_a_target_gets_the_docker_backend_over_its_executor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpu1 = FakeExecutor(host="gpu1")
    monkeypatch.setattr(hosts, "open_executor", opener(gpu1))
    g = Globals(None, ("gpu1",), None, None, "all", False, False, True, "table")
    backend = fleet.open_backend(g, "gpu1")
    assert isinstance(backend, DockerBackend)
    assert (backend.host, backend.executor) == ("gpu1", gpu1)
