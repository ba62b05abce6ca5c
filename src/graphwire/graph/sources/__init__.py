"""Graph sources: a path in, a :class:`~graphwire.graph.model.GraphData` out.

=========================  ===================================  ==============================
path                       format                               module
=========================  ===================================  ==============================
``None``                   the bundled demo (the stdlib)        :mod:`.demo`
a folder                   Logseq / Obsidian Markdown vault     :mod:`.markdown`
``*.json``                 node-link JSON (networkx)            :mod:`.node_link`
``*.graphml``, ``*.gexf``  GraphML, GEXF (via networkx)         :mod:`.graphml`
``*.csv``                  ``source,target[,weight]`` rows      :mod:`.csv_edges`
=========================  ===================================  ==============================

Sources never assign ids (``Graph.from_data`` does, in ascending key order, docs/protocol.md §3.1)
and every failure to read one is a :class:`SourceError` naming the file, and the line where it
is known.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..model import GraphData
from .csv_edges import load_csv_edges
from .demo import build_demo, load_demo
from .errors import SourceError
from .graphml import load_gexf, load_graphml
from .markdown import load_markdown_vault
from .node_link import load_node_link

__all__ = [
    "SourceError",
    "build_demo",
    "load_csv_edges",
    "load_demo",
    "load_gexf",
    "load_graphml",
    "load_markdown_vault",
    "load_node_link",
    "load_source",
]

SUFFIXES = (".json", ".graphml", ".gexf", ".csv")
"""File suffixes :func:`load_source` reads (any case)."""


def load_source(
    path: str | os.PathLike[str] | None, *, progress: bool | None = None
) -> GraphData:
    """Load the graph at ``path``, choosing the format by what the path is (see the table).

    ``progress``: ``True`` always draws a progress bar on stderr, ``False`` never does, and
    ``None`` draws one only when stderr is a terminal and the source is large (over 500 files,
    or 50,000 lines for CSV). Only the vault, CSV and demo loaders have one.
    """
    if path is None:
        return load_demo(progress=progress)
    try:
        return _load(path, progress)
    except SourceError:
        raise
    except (OSError, ValueError) as e:  # e.g. a path the OS refuses: too long, NUL byte
        raise SourceError(path, f"cannot be read ({e})") from e


def _load(path: str | os.PathLike[str], progress: bool | None) -> GraphData:
    p = Path(path)
    if p.is_dir():
        return load_markdown_vault(path, progress=progress)
    if not p.exists():
        raise SourceError(path, "no such file or folder")
    suffix = p.suffix.lower()
    if suffix == ".json":
        return load_node_link(path)
    if suffix == ".graphml":
        return load_graphml(path)
    if suffix == ".gexf":
        return load_gexf(path)
    if suffix == ".csv":
        return load_csv_edges(path, progress=progress)
    raise SourceError(
        path,
        f"unsupported source {suffix or '(no suffix)'}: expected a folder (Markdown vault), "
        + ", ".join(SUFFIXES),
    )
