"""Reads every import of the ncnnpass sources (module level, function level, ``TYPE_CHECKING`` blocks and
``importlib.import_module("ncnnpass...")`` calls) and checks them against the package tiers."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: folder -> import name (pyproject ``package-dir``)
FOLDERS = {"ir": "ncnnpass.ir", "passes": "ncnnpass.passes", "grammar": "ncnnpass.grammar", "bin": "ncnnpass.cli"}

#: bottom to top; a package may import its own tier (without cycles) and the tiers below, never above
TIERS: list[tuple[str, tuple[str, ...]]] = [
    ("the IR and its I/O", ("ncnnpass.grammar", "ncnnpass.ir")),
    ("the runtime bridge, targets, worker and their provisioning", ("ncnnpass.ir.runtime",)),
    ("the measurement core", ("ncnnpass.passes.measure",)),
    ("the pass engine and the passes", ("ncnnpass.passes.engine", "ncnnpass.passes.precision",
                                        "ncnnpass.passes.ncnn", "ncnnpass.passes.onnx", "ncnnpass.passes")),
    ("the tools", ("ncnnpass.passes.compare", "ncnnpass.passes.toolchain", "ncnnpass.passes.paddle")),
    ("the CLI", ("ncnnpass.cli",)),
]


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module
    where: str  # file:line


def modules(root: Path, folders: Mapping[str, str] = FOLDERS) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` under the mapped folders."""
    out = {}
    for folder, pkg in folders.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(root / folder).with_suffix("").parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def _import_module_arg(node: ast.Call) -> str | None:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip(".")  # f"ncnnpass.passes.ncnn.{name}" -> the package
    return None


def imports(mods: Mapping[str, Path], root: Path) -> list[Import]:
    """Every ncnnpass import, resolved to a module of ``mods``."""
    out = []
    roots = {m.split(".")[0] for m in mods}
    for name, path in mods.items():
        base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")
                    mod = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.Call):
                arg = _import_module_arg(node)
                targets = [arg] if arg else []
            for t in targets:
                if t.split(".")[0] not in roots:
                    continue
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods:
                    out.append(Import(name, t, f"{path.relative_to(root)}:{node.lineno}"))
    return out


def package_of(module: str, packages: Iterable[str]) -> str:
    """The longest listed package that holds ``module``."""
    best = max((p for p in packages if module == p or module.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise KeyError(module)
    return best


def check(root: Path, tiers: list[tuple[str, tuple[str, ...]]] = TIERS,
          folders: Mapping[str, str] = FOLDERS) -> list[str]:
    """Problems: unlisted packages, upward imports, cycles between packages. [] = the layering holds."""
    tier_of = {pkg: i for i, (_, pkgs) in enumerate(tiers) for pkg in pkgs}
    mods = modules(root, folders)
    problems = []
    actual = {m if p.name == "__init__.py" else m.rsplit(".", 1)[0] for m, p in mods.items()}
    for pkg in sorted(actual):
        if not any(pkg == p or pkg.startswith(p + ".") for p in tier_of):
            problems.append(f"package {pkg} is in no tier (add it to TIERS)")
    edges: dict[str, dict[str, str]] = defaultdict(dict)
    for imp in imports(mods, root):
        a, b = package_of(imp.source, tier_of), package_of(imp.target, tier_of)
        if a == b:
            continue
        edges[a].setdefault(b, imp.where)
        if tier_of[b] > tier_of[a]:
            problems.append(f"upward import: {imp.source} ({tiers[tier_of[a]][0]}) imports {imp.target} "
                            f"({tiers[tier_of[b]][0]}) at {imp.where}")
    for cycle in _cycles(edges):
        hops = " -> ".join(f"{a} ({edges[a][b]})" for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True))
        problems.append(f"package cycle: {hops} -> {cycle[0]}")
    return problems


def _cycles(edges: Mapping[str, Mapping[str, str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in list(edges):
        if v not in index:
            visit(v)
    out = []
    for comp in comps:  # walk one cycle inside the component
        members, path, v = set(comp), [comp[0]], comp[0]
        while True:
            v = next(w for w in edges[v] if w in members)
            if v in path:
                out.append(path[path.index(v):])
                break
            path.append(v)
    return out
