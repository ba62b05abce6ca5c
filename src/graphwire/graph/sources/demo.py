"""The bundled demo: the Python standard library as a knowledge graph.

Built from the installed standard library's source files with :mod:`ast`; no module is ever
imported (importing ``antigravity`` opens a browser, ``this`` prints), and no docstring or other
text is copied: names and structure only.

- Nodes: every public module (key = dotted name; metadata ``{"kind": "module", "package":
  <top-level package>}``), and the :data:`NAMES_PER_MODULE` most-referenced public top-level
  classes and functions of each (key = ``module.Name``, label = ``Name``, metadata ``{"kind":
  "class" | "function", "module", "package"}``). "Most-referenced" counts the other modules that
  use the name (``from m import Name``, ``m.Name``), then uses inside its own module, then
  source order; a module with a literal ``__all__`` (also grown by ``+=``, ``append``,
  ``extend``) offers only the names in it, and the codec modules of ``encodings`` offer none
  (see :data:`NAMELESS_PACKAGES`). Top-level means the module body, including ``if``/``try``/
  ``with`` blocks there.
- Edges: module → its names (``"defines"``, weight 1), package → submodule (``"contains"``, 1),
  module → each standard-library module it imports (``"imports"``, 0.5), class → base class when
  the base is a class node of the graph (``"inherits"``, 1; re-exports are followed).
- Skipped: tests (``test``/``tests`` folders), ``idlelib``, ``lib2to3``, ``turtledemo``,
  ``ensurepip``, ``pydoc_data``, ``site-packages``, modules and packages whose name starts with
  ``_``, and files that do not parse.

The result depends only on the Python installation (every walk is sorted). It is cached as
gzip'd node-link JSON under ``platformdirs.user_cache_dir("graphwire")``, keyed by the Python
version and a hash of the standard library's path and file count; an unreadable cache is
rebuilt, and a cache that cannot be written is only a slower next start.
"""

from __future__ import annotations

import ast
import contextlib
import gzip
import hashlib
import json
import os
import sys
import sysconfig
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from tqdm import tqdm

from ..model import EdgeSpec, GraphData, NodeSpec
from .errors import SourceError
from .node_link import graph_from_node_link
from .progress import LARGE_FILE_COUNT, show_progress

NAMES_PER_MODULE = 40
"""At most this many classes and functions of one module become nodes (~2,900 nodes in all on
CPython 3.11; a cap of 40 trims big modules such as ``typing`` and ``tkinter``)."""

SKIPPED_FOLDERS = frozenset({
    "test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "pydoc_data",
    "site-packages", "dist-packages", "__pycache__",
})
"""Folders of the standard library that are not part of the demo."""

NAMELESS_PACKAGES = frozenset({"encodings"})
"""Packages whose submodules give no names: the ~120 codecs of ``encodings`` all define the same
few classes, which would crowd out the rest of the library."""

DEMO_NAME = "python-stdlib"
"""The name of the demo graph."""

_CACHE_FORMAT = 1  # bump when the graph built from the same sources changes
_IMPORT_WEIGHT = 0.5
_MAX_HOPS = 6  # re-export chains followed when resolving a name (a.X -> b.X -> c.X)


def stdlib_path() -> Path:
    """The folder of the installed standard library's source files."""
    return Path(sysconfig.get_paths()["stdlib"])


def build_demo(*, progress: bool | None = None) -> GraphData:
    """Build the demo graph from the standard library's sources (no cache; a few seconds)."""
    root = stdlib_path()
    files = module_files(root)
    if not files:
        raise SourceError(root, "the standard library's source files are not installed")
    show = show_progress(progress, len(files), LARGE_FILE_COUNT)
    modules: dict[str, _Module] = {}
    for name, file in tqdm(files, disable=not show, file=sys.stderr, unit="file"):
        module = _read_module(name, file)
        if module is not None:
            modules[name] = module
    if not modules:
        raise SourceError(root, "no standard-library module could be read")
    return _Builder(modules).graph()


def load_demo(
    *, progress: bool | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> GraphData:
    """The demo graph, from the cache when it is there and readable, else built and cached.

    ``cache_dir`` defaults to ``platformdirs.user_cache_dir("graphwire")``.
    """
    path = demo_cache_path(cache_dir)
    cached = _read_cache(path)
    if cached is not None:
        return cached
    data = build_demo(progress=progress)
    _write_cache(path, data)
    return data


def demo_cache_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the demo graph of this Python installation is cached."""
    root = stdlib_path()
    stamp = f"{_CACHE_FORMAT}\0{root}\0{len(module_files(root))}"
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    impl = sys.implementation.name
    version = ".".join(str(part) for part in sys.version_info[:3])
    folder = Path(cache_dir) if cache_dir is not None else Path(
        platformdirs.user_cache_dir("graphwire")
    )
    return folder / f"demo-{impl}{version}-{digest}.json.gz"


def module_files(root: Path) -> list[tuple[str, Path]]:
    """``(dotted module name, file)`` for every public module under ``root``, sorted by name."""
    found: list[tuple[str, Path]] = []

    def walk(folder: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            name = entry.name
            if entry.is_dir(follow_symlinks=False):
                if (
                    name in SKIPPED_FOLDERS
                    or name.startswith(("_", "."))
                    or not name.isidentifier()
                    or not os.path.isfile(os.path.join(entry.path, "__init__.py"))
                ):
                    continue
                walk(Path(entry.path), f"{prefix}{name}.")
            elif name.endswith(".py") and entry.is_file():
                stem = name[:-3]
                if stem == "__init__" and prefix:
                    found.append((prefix[:-1], Path(entry.path)))
                elif stem.isidentifier() and not stem.startswith("_"):
                    found.append((prefix + stem, Path(entry.path)))

    try:
        walk(root, "")
    except OSError:
        return []
    return sorted(found)


# -- reading one module ---------------------------------------------------------------------


@dataclass(slots=True)
class _Module:
    name: str
    is_package: bool
    defs: dict[str, str] = field(default_factory=dict)  # public name → "class" | "function"
    bases: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)  # dotted names
    exported: set[str] | None = None  # a literal __all__
    bindings: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    stars: list[str] = field(default_factory=list)  # modules imported with "*"
    imported: list[str] = field(default_factory=list)  # absolute names, as written
    uses: list[tuple[str, ...]] = field(default_factory=list)  # dotted names in the code
    imported_names: list[tuple[str, str]] = field(default_factory=list)  # from m import n

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _read_module(name: str, file: Path) -> _Module | None:
    try:
        code = file.read_bytes()
        with warnings.catch_warnings():
            # Print nothing, and parse the same whatever the warning filters (-W error would
            # turn a SyntaxWarning into a SyntaxError and drop the module).
            warnings.simplefilter("ignore")
            tree = ast.parse(code, filename=str(file))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    module = _Module(name, file.name == "__init__.py")
    for stmt in _top_level(tree.body):
        if isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if not stmt.name.startswith("_") and stmt.name not in module.defs:
                module.defs[stmt.name] = "class" if isinstance(stmt, ast.ClassDef) else "function"
                if isinstance(stmt, ast.ClassDef):
                    module.bases[stmt.name] = [
                        parts for b in stmt.bases if (parts := _dotted(b)) is not None
                    ]
        else:
            _read_all(module, stmt)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name | ast.Attribute):
            parts = _dotted(node)
            if parts is not None:
                module.uses.append(parts)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module.imported.append(alias.name)
                if alias.asname:
                    module.bindings[alias.asname] = (alias.name, None)
                else:
                    head = alias.name.split(".", 1)[0]
                    module.bindings[head] = (head, None)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            if source is None:
                continue
            module.imported.append(source)
            for alias in node.names:
                if alias.name == "*":
                    module.stars.append(source)
                else:
                    module.imported.append(f"{source}.{alias.name}")
                    module.imported_names.append((source, alias.name))
                    module.bindings[alias.asname or alias.name] = (source, alias.name)
    return module


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    # Statements of the module body, including those under top-level if/try/with blocks.
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from _top_level(stmt.body)
            yield from _top_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            yield from _top_level(stmt.body)
            for handler in stmt.handlers:
                yield from _top_level(handler.body)
            yield from _top_level(stmt.orelse)
            yield from _top_level(stmt.finalbody)
        elif isinstance(stmt, ast.With):
            yield from _top_level(stmt.body)


def _read_all(module: _Module, stmt: ast.stmt) -> None:
    # __all__ = [...], __all__ += [...], __all__.extend([...]), __all__.append("x"); anything
    # else that builds __all__ makes it unknown (all public names are offered).
    def is_all(expr: ast.expr) -> bool:
        return isinstance(expr, ast.Name) and expr.id == "__all__"

    if isinstance(stmt, ast.Assign) and any(is_all(t) for t in stmt.targets):
        module.exported = _literal_names(stmt.value)
    elif isinstance(stmt, ast.AugAssign) and is_all(stmt.target):
        added = _literal_names(stmt.value)
        if module.exported is not None:
            module.exported = None if added is None else module.exported | added
    elif (
        isinstance(stmt, ast.Expr)
        and isinstance(call := stmt.value, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and is_all(call.func.value)
        and module.exported is not None
    ):
        args: ast.expr | None = None
        if call.func.attr == "append":
            args = ast.List(elts=list(call.args))
        elif call.func.attr == "extend" and len(call.args) == 1:
            args = call.args[0]
        added = None if args is None else _literal_names(args)
        module.exported = None if added is None else module.exported | added


def _literal_names(value: ast.expr) -> set[str] | None:
    if not isinstance(value, ast.List | ast.Tuple):
        return None
    constants = [e.value for e in value.elts if isinstance(e, ast.Constant)]
    names = [n for n in constants if isinstance(n, str)]
    return set(names) if len(names) == len(value.elts) else None


def _absolute(module: _Module, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    parts = module.package.split(".") if module.package else []
    if node.level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (node.level - 1)]
    if node.module:
        base.append(node.module)
    return ".".join(base) or None


def _dotted(expr: ast.expr) -> tuple[str, ...] | None:
    # "a.b.C" as ("a", "b", "C"); None for anything but a name or a chain of attributes.
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    return tuple(reversed(parts))


# -- building the graph ---------------------------------------------------------------------


class _Builder:
    def __init__(self, modules: dict[str, _Module]) -> None:
        self.modules = modules
        self._resolved: dict[tuple[str, str], str | None] = {}

    def resolve(self, module: str, name: str, hops: int = 0) -> str | None:
        """The ``module.Name`` key a name of ``module`` stands for, following re-exports."""
        memo = (module, name)
        if memo in self._resolved:
            return self._resolved[memo]
        found: str | None = None
        info = self.modules.get(module)
        if info is not None and hops <= _MAX_HOPS:
            if name in info.defs:
                found = f"{module}.{name}"
            elif name in info.bindings:
                source, attr = info.bindings[name]
                if attr is not None and (source, attr) != memo:
                    found = self.resolve(source, attr, hops + 1)
            else:
                for star in info.stars:
                    if star != module and (found := self.resolve(star, name, hops + 1)):
                        break
        if hops == 0 or found is not None:
            self._resolved[memo] = found
        return found

    def target(self, module: _Module, parts: tuple[str, ...]) -> str | None:
        """The definition a dotted name in ``module`` stands for (``Name``, ``mod.Name``)."""
        head, rest = parts[0], list(parts[1:])
        if not rest:
            if head in module.defs:
                return f"{module.name}.{head}"
            source, attr = module.bindings.get(head, ("", None))
            return None if attr is None else self.resolve(source, attr)
        binding = module.bindings.get(head)
        if binding is None:
            return None
        source, attr = binding
        full = [source] if attr is None else [source, attr]
        full += rest
        owner = ".".join(full[:-1])
        return self.resolve(owner, full[-1]) if owner in self.modules else None

    def chosen_names(self) -> dict[str, list[str]]:
        """The names of each module that become nodes (see :data:`NAMES_PER_MODULE`)."""
        users: dict[str, set[str]] = {}
        own: Counter[str] = Counter()
        for name, module in self.modules.items():
            found = [self.target(module, parts) for parts in module.uses]
            found += [self.resolve(source, n) for source, n in module.imported_names]
            for key in found:
                if key is None:
                    continue
                if key.rpartition(".")[0] == name:
                    own[key] += 1
                else:
                    users.setdefault(key, set()).add(name)
        chosen: dict[str, list[str]] = {}
        for name, module in self.modules.items():
            if name.partition(".")[0] in NAMELESS_PACKAGES and "." in name:
                chosen[name] = []
                continue
            offered = [
                n for n in module.defs if module.exported is None or n in module.exported
            ]
            order = {n: i for i, n in enumerate(offered)}

            def rank(n: str, name: str = name, order: dict[str, int] = order) -> tuple[int, ...]:
                key = f"{name}.{n}"
                return (-len(users.get(key, ())), -own[key], order[n])

            chosen[name] = sorted(offered, key=rank)[:NAMES_PER_MODULE]
        return chosen

    def imported_module(self, name: str) -> str | None:
        """The longest module of the graph that ``name`` (``a.b.c``) is or lies in."""
        while name:
            if name in self.modules:
                return name
            name = name.rpartition(".")[0]
        return None

    def graph(self) -> GraphData:
        nodes: list[NodeSpec] = []
        edges: list[EdgeSpec] = []
        for name in self.modules:
            top = name.split(".", 1)[0]
            nodes.append(NodeSpec(name, label=name, metadata={"kind": "module", "package": top}))
            parent = name.rpartition(".")[0]
            if parent in self.modules:
                edges.append(EdgeSpec(parent, name, 1.0, "contains"))
        keys = set(self.modules)
        chosen = self.chosen_names()
        for name, names in chosen.items():
            module = self.modules[name]
            top = name.split(".", 1)[0]
            for n in names:
                key = f"{name}.{n}"
                if key in keys:  # a package's name that is also one of its submodules
                    continue
                keys.add(key)
                meta = {"kind": module.defs[n], "module": name, "package": top}
                nodes.append(NodeSpec(key, label=n, metadata=meta))
                edges.append(EdgeSpec(name, key, 1.0, "defines"))
        for name, module in self.modules.items():
            targets = {self.imported_module(i) for i in module.imported}
            edges += [
                EdgeSpec(name, t, _IMPORT_WEIGHT, "imports")
                for t in sorted(t for t in targets if t is not None and t != name)
            ]
            for cls in chosen[name]:
                key = f"{name}.{cls}"
                for base in module.bases.get(cls, ()):
                    target = self.target(module, base)
                    if target is not None and target != key and target in keys:
                        edges.append(EdgeSpec(key, target, 1.0, "inherits"))
        return GraphData(nodes=nodes, edges=edges, name=DEMO_NAME)


# -- the cache ------------------------------------------------------------------------------


def _read_cache(path: Path) -> GraphData | None:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
        return graph_from_node_link(path, data)
    except (OSError, EOFError, ValueError, SourceError):
        return None


def _write_cache(path: Path, data: GraphData) -> None:
    document: dict[str, Any] = {
        "directed": False,
        "multigraph": False,
        "graph": {"name": data.name},
        "nodes": [
            {"id": n.key, **({"label": n.label} if n.label is not None else {}), **n.metadata}
            for n in data.nodes
        ],
        "links": [
            {"source": e.source, "target": e.target, "weight": e.weight, "type": e.type}
            for e in data.edges
        ],
    }
    body = json.dumps(document, separators=(",", ":")).encode()
    temp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(body)
        os.replace(temp, path)
        temp = None
    except OSError:
        pass  # no cache: the next load builds again
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
