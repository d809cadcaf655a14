"""docs/architecture.md is how a newcomer finds a room: it must name every module there is."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_architecture_page_names_every_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = sorted(p.name for p in (ROOT / "taoremote").glob("*.py"))
    assert modules, "no modules found: the check itself is broken"
    assert [m for m in modules if f"`{m}`" not in page] == []


def test_no_module_is_larger_than_one_sitting() -> None:
    sizes = {
        p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / "taoremote").glob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 350} == {}
