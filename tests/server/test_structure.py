"""The shape of ``graphwire.server``: import arrows point one way, and nothing imports the app."""

from __future__ import annotations

import ast
from pathlib import Path

import graphwire.server

SERVER = Path(graphwire.server.__path__[0])


def _imports(path: Path) -> set[str]:
    """The server modules a module imports (at run time or for type checking)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y
                out.add(node.module or "")
            elif node.module and node.module.startswith("graphwire.server."):
                out.add(node.module.split(".")[2])
            elif node.module == "graphwire.server":
                out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[2] for a in node.names
                    if a.name.startswith("graphwire.server.")}
    return out - {""}


def _graph() -> dict[str, set[str]]:
    return {p.stem: _imports(p) for p in SERVER.glob("*.py") if p.stem != "__init__"}


def test_no_module_imports_the_app() -> None:
    graph = _graph()
    assert "app" in graph
    importers = sorted(m for m, deps in graph.items() if "app" in deps)
    assert importers == [], f"{importers} import server.app: pass them what they need instead"
    outside = [p for p in SERVER.parent.rglob("*.py")
               if SERVER not in p.parents and p.parent != SERVER
               and "graphwire.server.app" in p.read_text() and p.name != "cli.py"]
    assert outside == []  # only the command line starts an app


def test_server_imports_form_no_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph.get(module, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_checker_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from .app import x\nfrom graphwire.server.session import S\n"
                     "from graphwire.server import routes\nimport graphwire.server.http\n")
    assert _imports(probe) == {"app", "session", "routes", "http"}
