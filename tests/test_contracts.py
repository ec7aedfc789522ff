"""The import contracts of the layout, read from the source (every import,
including those inside functions, since a lazy import is still a dependency).

- system/ imports nothing else of memwarden: it is the one place that reads
  /proc and cgroup files, and everything may rely on it;
- see/ imports nothing from find/, hold/ or export/;
- export/ imports nothing from hold/, and hold/ nothing from export/: what
  hold does reaches the exporters as events on memwarden.events;
- no import cycles between memwarden's modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "memwarden").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _breaches(source: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{name} -> {dep}" for name, deps in GRAPH.items() if _inside(name, source)
                  for dep in deps if any(_inside(dep, f) for f in forbidden))


def test_the_graph_is_read() -> None:
    # A reader that found nothing would pass every contract below.
    assert "memwarden.system.probe" in GRAPH["memwarden.see.meter"]
    assert "memwarden.events" in GRAPH["memwarden.hold.worker"]
    assert len(GRAPH) > 90


def test_system_imports_nothing_else_of_memwarden() -> None:
    assert [f"{name} -> {dep}" for name, deps in sorted(GRAPH.items())
            if _inside(name, "memwarden.system")
            for dep in sorted(deps) if not _inside(dep, "memwarden.system")] == []


@pytest.mark.parametrize(("source", "forbidden"), [
    ("memwarden.see", ("memwarden.find", "memwarden.hold", "memwarden.export")),
    ("memwarden.export", ("memwarden.hold",)),
    ("memwarden.hold", ("memwarden.export", "memwarden.exporters")),
])
def test_layer_contracts(source: str, forbidden: tuple[str, ...]) -> None:
    assert _breaches(source, forbidden) == []


def _cycles() -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(GRAPH[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []
