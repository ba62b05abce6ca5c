"""GraphML and GEXF files, read with networkx.

A node's key is its identifier as a string; its attributes follow the rules of
:mod:`.attributes` (GEXF's ``viz`` block, if any, stays in the metadata as an object). Edges are
undirected here: each edge of a directed or multi graph gives one edge spec, and
:meth:`Graph.from_data` sums the weights between the same two nodes. An edge's ``type``
attribute (a string) is kept; its other attributes are dropped.
"""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..model import EdgeSpec, GraphData, NodeSpec
from .attributes import edge_type, edge_weight, node_spec
from .errors import SourceError
from .text_file import read_bytes


def load_graphml(path: str | os.PathLike[str]) -> GraphData:
    """Load a GraphML file (``networkx.read_graphml``)."""
    import networkx as nx  # imported when needed: it takes a while to import

    return _load(path, "GraphML", nx.read_graphml)


def load_gexf(path: str | os.PathLike[str]) -> GraphData:
    """Load a GEXF file (``networkx.read_gexf``)."""
    import networkx as nx

    return _load(path, "GEXF", nx.read_gexf)


def _load(path: str | os.PathLike[str], fmt: str, read: Callable[[Any], Any]) -> GraphData:
    data = read_bytes(path)  # a missing or unreadable file fails here, with a plain message
    try:
        graph = read(io.BytesIO(data))
    except ET.ParseError as e:
        line, column = e.position
        reason = str(e).split(":", 1)[0]  # drop expat's own "line 3, column 4"
        raise SourceError(path, f"not valid {fmt}: {reason}", line, column + 1) from None
    except Exception as e:
        # networkx reports a bad document with NetworkXError, KeyError, ValueError, TypeError...
        detail = str(e) or type(e).__name__
        raise SourceError(path, f"not valid {fmt}: {detail}") from None
    return _graph_data(path, graph)


def _graph_data(path: str | os.PathLike[str], graph: Any) -> GraphData:
    nodes: list[NodeSpec] = []
    keys: dict[Any, str] = {}
    for node_id, attrs in graph.nodes(data=True):
        key = str(node_id)
        if not key:
            raise SourceError(path, "a node has an empty identifier")
        keys[node_id] = key
        nodes.append(node_spec(key, attrs))
    if not nodes:
        raise SourceError(path, "has no nodes")
    if len(set(keys.values())) != len(keys):
        raise SourceError(path, "two nodes have identifiers with the same text")
    edges: list[EdgeSpec] = []
    for source, target, attrs in graph.edges(data=True):
        a, b = keys[source], keys[target]
        weight = edge_weight(attrs)
        if weight is None:
            raise SourceError(
                path,
                f"edge {a!r}–{b!r} has weight {attrs.get('weight')!r}; "
                "a weight is a positive number",
            )
        edges.append(EdgeSpec(a, b, weight, edge_type(attrs)))
    name = graph.graph.get("name")
    if not isinstance(name, str) or not name:
        name = Path(path).stem or "graph"
    return GraphData(nodes=nodes, edges=edges, name=name)
