"""Imports flow one way (docs/architecture.md, "Layers"): a walk over every module of the package.

Layers, bottom to top: ``errors``/``clock``; the foundation (``settings``, ``storage``); the domain
packages; ``app`` (composition); ``cli`` and ``__main__``. A module may import its own layer or any
layer below. Inside the domain layer an import goes to a package of a lower rank (``DOMAIN_RANK``),
so the domain packages cannot form a cycle; no module cycle anywhere (the foundation is checked module
by module: settings reads files and schema names from storage, storage's writers take the settings);
CLI modules do not import each other (``cli.common`` excepted). Lazy imports inside functions count.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import collector

ROOT = Path(collector.__file__).parent

LAYERS: dict[str, int] = {
    "errors": 0, "clock": 0,
    "settings": 1, "storage": 1,
    **dict.fromkeys(("ble", "doses", "nights", "effects", "report", "dashboards", "importers", "mqtt",
                     "validation", "sim"), 2),
    "app": 3,
    "cli": 4, "__main__": 4,
}


#: Inside the domain layer an import must go to a lower rank: effects is the plain statistics, nights
#: reads InfluxDB and stages (tagging nights through effects), wearables/doses/validation use nights'
#: algorithms, and the importers, the simulator and the Home Assistant bridge sit on top of those.
DOMAIN_RANK: dict[str, int] = {
    "effects": 0,
    "nights": 1, "report": 1, "dashboards": 1,
    "ble": 2, "doses": 2, "validation": 2,
    "importers": 3, "sim": 3, "mqtt": 3,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[str, int]]:
    """Every ``collector`` module ``path`` imports (lazy imports inside functions included), with its line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, node.lineno
            for a in node.names:  # `from collector.x import y` where y is a module
                yield f"{mod}.{a.name}", node.lineno


@cache
def graph() -> dict[str, dict[str, int]]:
    """module -> {imported collector module: line}; only modules that exist."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    out: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        deps: dict[str, int] = {}
        for mod, line in imports_of(path):
            if mod in files and mod != name:
                deps.setdefault(mod, line)
        out[name] = deps
    return out


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_top_level_name_has_a_layer() -> None:
    tops = {top(m) for m in graph()} - {"collector"}
    assert tops - LAYERS.keys() == set(), "add the new package to LAYERS (and docs/architecture.md)"


def test_no_upward_import() -> None:
    bad = [f"{m} (layer {LAYERS[top(m)]}) imports {d} (layer {LAYERS[top(d)]}) at line {line}"
           for m, deps in graph().items() if top(m) in LAYERS
           for d, line in deps.items() if top(d) in LAYERS and LAYERS[top(d)] > LAYERS[top(m)]]
    assert bad == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_domain_packages_import_only_lower_ranks() -> None:
    assert {p for p, layer in LAYERS.items() if layer == 2} == DOMAIN_RANK.keys()
    bad = [f"{m} (rank {DOMAIN_RANK[top(m)]}) imports {d} (rank {DOMAIN_RANK[top(d)]}) at line {line}"
           for m, deps in graph().items() if top(m) in DOMAIN_RANK
           for d, line in deps.items() if top(d) in DOMAIN_RANK and top(d) != top(m)
           and DOMAIN_RANK[top(d)] >= DOMAIN_RANK[top(m)]]
    assert bad == []


def test_no_cycle_between_packages_above_the_foundation() -> None:
    edges: dict[str, set[str]] = {}
    for m, deps in graph().items():
        if LAYERS.get(top(m), 0) >= 2:
            edges.setdefault(top(m), set()).update(top(d) for d in deps if top(d) != top(m))
    assert _cycles(edges) == []


def test_no_cycle_between_modules() -> None:
    g = graph()
    # a package's __init__ importing its own submodules is how packages re-export; not a cycle of meaning
    edges = {m: {d for d in deps if m != d.rpartition(".")[0]} for m, deps in g.items()}
    assert _cycles(edges) == []


def test_cli_modules_do_not_import_each_other() -> None:
    bad = [f"{m} imports {d}" for m, deps in graph().items() if m.startswith("collector.cli.")
           for d in deps if d.startswith("collector.cli.") and d not in ("collector.cli", "collector.cli.common")]
    assert bad == []


def test_the_checks_see_real_edges() -> None:
    """A broken walk (no edges) would pass every check above."""
    g = graph()
    assert "collector.storage.schema" in g["collector.nights.run"]
    assert "collector.nights.activity" in g["collector.ble.profiles.activity"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


DOC = ROOT.parent / "docs" / "architecture.md"


def mapped_paths() -> set[str]:
    """Every `collector/...` path named in the module map of docs/architecture.md."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    return {m for row in section.splitlines() if row.startswith("| `collector/")
            for m in re.findall(r"`(collector/[^`]+)`", row.split("|")[1])}


def test_module_map_names_only_what_exists() -> None:
    missing = sorted(p for p in mapped_paths() if not (ROOT.parent / p.rstrip("/")).exists())
    assert missing == [], "docs/architecture.md names paths that are gone"


def test_module_map_covers_every_package_and_root_module() -> None:
    named = mapped_paths()
    parts = sorted(f"collector/{p.name}/" for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    parts += sorted(f"collector/{p.name}" for p in ROOT.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    unmapped = [p for p in parts if not any(n == p or n.startswith(p) for n in named)]
    assert unmapped == [], "add these to the module map of docs/architecture.md"
