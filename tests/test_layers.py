"""Packages import in one direction: the IR at the bottom, then the runtime bridge, the measurement core,
the pass engine and the passes, the tools, the CLI on top (docs/DEVELOPING.md). Every import counts:
module level, function level, ``TYPE_CHECKING`` blocks and ``importlib.import_module`` strings."""

from __future__ import annotations

from pathlib import Path

from support.layers import TIERS, check

REPO = Path(__file__).resolve().parents[1]


def test_no_upward_import_and_no_package_cycle() -> None:
    problems = check(REPO)
    assert not problems, "\n".join(problems)


def _tree(tmp: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp


def test_the_checker_finds_upward_imports_cycles_and_unlisted_packages(tmp_path: Path) -> None:
    tiers = [("low", ("pkg.low",)), ("mid", ("pkg.mid", "pkg.side")), ("top", ("pkg.top",))]
    root = _tree(tmp_path, {
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from pkg.top import x\n",  # function-level, upward
        "mid/__init__.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.side import s\n",
        "mid/m.py": "import importlib\nimportlib.import_module('pkg.low.a')\n",
        "side/__init__.py": "from ..mid import m\n",  # mid <-> side: a cycle inside one tier
        "top/__init__.py": "from pkg.low import a\n",
        "odd/__init__.py": "",
    })
    folders = {"low": "pkg.low", "mid": "pkg.mid", "side": "pkg.side", "top": "pkg.top", "odd": "pkg.odd"}
    problems = check(root, tiers, folders)
    assert any(p.startswith("upward import: pkg.low.a (low) imports pkg.top (top) at low/a.py:2") for p in problems)
    assert any(p.startswith("package cycle: pkg.side (side/__init__.py:1) -> pkg.mid (mid/__init__.py:3)")
               for p in problems)
    assert any(p.startswith("package cycle:") and "pkg.low" in p and "pkg.top" in p for p in problems)
    assert "package pkg.odd is in no tier (add it to TIERS)" in problems
    assert len(problems) == 4, problems


def test_tiers_are_the_documented_ones() -> None:
    text = (REPO / "docs" / "DEVELOPING.md").read_text()
    for name, packages in TIERS:
        assert name in text, name
        for pkg in packages:
            assert f"`{pkg}`" in text, pkg
