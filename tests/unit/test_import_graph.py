"""The package's import graph has no cycle (issue 8): every module can be read, tested and moved
without dragging in the modules that use it. Deferred (function-level) imports count too: a cycle
hidden inside a function is still a cycle of knowledge."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "taoremote"


def _taoremote_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "taoremote":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("taoremote."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("taoremote."))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {
        p.stem: {m for m in _taoremote_imports(p) if m in modules and m != p.stem}
        for p in PACKAGE.glob("*.py")
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_package_import_graph_has_no_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_sweep_driver_knows_its_launch_mixin_and_not_the_other_way() -> None:
    # sweep_launch.TrialLaunches declares the driver state it uses instead of importing sweep_run
    graph = import_graph()
    assert "sweep_launch" in graph["sweep_run"]
    assert not {"sweep_run", "sweep_slurm_driver"} & graph["sweep_launch"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_deferred_and_package_level_imports() -> None:
    graph = import_graph()
    assert "settings" in graph["cli"] or "settings" in graph["actions"]
    assert graph["__main__"] >= {"cli"} or graph["__main__"] >= {"__init__"} or graph["__main__"]
