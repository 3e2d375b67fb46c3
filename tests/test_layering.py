"""The package graph is one-way, checked on the syntax tree of every module (imports inside
functions count, relative imports are resolved):

    golden -> bus -> hdl, host -> sim -> boards -> train -> explore -> tritium.cli

golden imports nothing else of tritium; bus imports only golden; no library package imports
the command-line layer; no two packages import each other (the graph is acyclic).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Source folder of each package (pyproject.toml [tool.setuptools.package-dir]).
PACKAGES = {"golden": "golden", "bus": "bus", "hdl": "hdl", "host": "host", "sim": "sim",
            "boards": "boards", "explore": "explore", "train": "train", "cli": "tritium"}
LIBRARY = ("golden", "bus", "hdl", "host", "sim", "boards", "explore", "train")

# What each library package may import (besides itself): the layers below it.
ALLOWED = {
    "golden": set(),
    "bus": {"golden"},
    "hdl": {"golden", "bus"},
    "host": {"golden", "bus"},
    "sim": {"golden", "bus", "hdl", "host"},
    "boards": {"golden", "bus", "hdl", "host", "sim"},
    # the sweep's accuracy metric runs train.evaluate (torch-free)
    "explore": {"golden", "bus", "hdl", "host", "sim", "boards", "train"},
    "train": {"golden", "bus", "hdl", "host", "sim", "boards"},
}



def module_name(rel: str) -> str:
    """Dotted name of the module at rel (a path under ROOT)."""
    folder, _, rest = rel.partition("/")
    pkg = next(name for name, src in PACKAGES.items() if src == folder)
    parts = ["tritium"] + ([] if pkg == "cli" else [pkg]) + rest[:-3].split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, name: str, is_package: bool) -> set[str]:
    """Absolute names of every module source imports, anywhere in the file. For `from X
    import y` both X and X.y are given, since y may be a submodule."""
    out: set[str] = set()
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)
    return out


def layer_of(module: str) -> str | None:
    """The package a tritium module belongs to (None outside tritium)."""
    parts = module.split(".")
    if parts[0] != "tritium":
        return None
    if len(parts) > 1 and parts[1] in LIBRARY:
        return parts[1]
    return "cli"    # the tritium package itself: __init__, the CLI and its helpers


def package_graph(files: dict[str, str]) -> tuple[dict[str, set[str]], list[str]]:
    """(package -> packages it imports, per-import descriptions) for files {rel path: source}.
    Legacy CLI files count as the CLI layer."""
    graph: dict[str, set[str]] = {}
    edges: list[str] = []
    for rel, source in sorted(files.items()):
        name = module_name(rel)
        src = layer_of(name)
        graph.setdefault(src, set())
        for mod in imported_modules(source, name, rel.endswith("__init__.py")):
            # "from tritium import golden" names the package, not the CLI layer; the root
            # package holds only the version
            dst = layer_of(mod)
            if mod in ("tritium", "tritium.__version__") or dst is None or dst == src:
                continue
            graph[src].add(dst)
            edges.append(f"{rel} ({src}) imports {mod} ({dst})")
    return graph, edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def violations(files: dict[str, str]) -> list[str]:
    graph, edges = package_graph(files)
    bad = []
    for edge in edges:
        src, dst = re.search(r"\((\w+)\) imports \S+ \((\w+)\)", edge).groups()
        if src in ALLOWED and dst not in ALLOWED[src]:
            what = "the CLI layer" if dst == "cli" else f"package {dst}"
            bad.append(f"{edge}: {src} may not import {what}")
    cycle = find_cycle(graph)
    if cycle:
        bad.append("packages import each other: " + " -> ".join(cycle))
    return bad


def tree_files() -> dict[str, str]:
    files = {}
    for folder in PACKAGES.values():
        for path in sorted((ROOT / folder).rglob("*.py")):
            files[path.relative_to(ROOT).as_posix()] = path.read_text()
    return files


def test_the_package_graph_is_one_way() -> None:
    files = tree_files()
    assert "bus/contract.py" in files and "golden/config.py" in files
    bad = violations(files)
    assert not bad, "layering violations:\n" + "\n".join(bad)


# --- the checker itself, on synthetic trees ------------------------------------------------


@pytest.mark.parametrize(("files", "expected"), [
    ({"golden/a.py": "def f():\n    from ..host import model\n"},
     "golden may not import package host"),
    ({"bus/c.py": "from tritium.hdl.top import x\n"}, "bus may not import package hdl"),
    ({"host/x.py": "from ..cliutil import add_array_args\n"},
     "host may not import the CLI layer"),
    ({"sim/x.py": "import tritium.cli\n"}, "sim may not import the CLI layer"),
    ({"host/x.py": "from ..sim import verilated\n", "sim/y.py": "from ..host import driver\n"},
     "packages import each other: host -> sim -> host"),
    ({"host/x.py": "from ..hdl import regmap\n"}, "host may not import package hdl"),
    ({"hdl/sub/__init__.py": "from ...host import y\n"}, "hdl may not import package host"),
])
def test_checker_finds_violations(files: dict[str, str], expected: str) -> None:
    assert any(expected in v for v in violations(files)), violations(files)


def test_checker_accepts_downward_imports() -> None:
    files = {
        "golden/a.py": "import numpy\nfrom .b import c\n",
        "bus/c.py": "from ..golden.config import ArrayConfig\n",
        "host/d.py": "def f():\n    from ..bus import Program\n",
        "boards/e.py": "from ..sim.runner import x\nfrom ..host import y\n",
        "tritium/cli/run.py": "from ..golden import ArrayConfig\nfrom ..hdl import generate\n",
    }
    assert violations(files) == []


def test_relative_imports_resolve_from_packages_and_modules() -> None:
    assert "tritium.golden.config" in imported_modules(
        "from ..golden import config", "tritium.host.x", False)
    assert "tritium.hdl.top" in imported_modules("from .top import y", "tritium.hdl", True)
    assert module_name("tritium/cli/run.py") == "tritium.cli.run"
    assert module_name("bus/__init__.py") == "tritium.bus"
