"""Node-link JSON, the format ``networkx.node_link_data`` writes.

``{"directed", "multigraph", "graph", "nodes": [{"id", ...}], "links" | "edges": [{"source",
"target", "weight"?, ...}]}``. A node's key is ``str(id)``; its other attributes follow the rules
of :mod:`.attributes`. Edges are undirected here: a directed or multi graph gives one edge spec
per link, and :meth:`Graph.from_data` sums the weights of links between the same two nodes. An
edge's ``type`` attribute (a string) is kept; its other attributes are dropped, as edges carry no
metadata. Link numbers in messages count from 0, as the JSON array does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..model import EdgeSpec, GraphData, NodeSpec
from .attributes import edge_type, edge_weight, node_spec
from .errors import SourceError
from .text_file import read_text


def load_node_link(path: str | os.PathLike[str]) -> GraphData:
    """Load a node-link JSON file."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SourceError(path, f"not valid JSON: {e.msg}", e.lineno, e.colno) from None
    except RecursionError:
        raise SourceError(path, "not valid JSON: nested too deeply") from None
    return graph_from_node_link(path, data)


def graph_from_node_link(path: str | os.PathLike[str], data: Any) -> GraphData:
    """The graph of already-parsed node-link data; ``path`` only names the source in errors."""
    if not isinstance(data, dict):
        raise SourceError(path, "not node-link JSON: the top level is not an object")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list):
        raise SourceError(path, "not node-link JSON: no 'nodes' list")
    if "links" in data and "edges" in data:
        raise SourceError(path, "has both 'links' and 'edges'; node-link JSON has one of them")
    word = "edge" if "edges" in data else "link"
    raw_edges = data.get(word + "s", [])
    if not isinstance(raw_edges, list):
        raise SourceError(path, f"not node-link JSON: '{word}s' is not a list")

    nodes: list[NodeSpec] = []
    keys: set[str] = set()
    for i, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict) or "id" not in raw:
            raise SourceError(path, f"node {i} is not an object with an 'id'")
        key = _key(raw["id"])
        if not key:
            raise SourceError(path, f"node {i} has an empty id")
        if key in keys:
            raise SourceError(path, f"node {i}: the id {key!r} appears twice")
        keys.add(key)
        nodes.append(node_spec(key, {k: v for k, v in raw.items() if k != "id"}))
    if not nodes:
        raise SourceError(path, "has no nodes")

    edges: list[EdgeSpec] = []
    for i, raw in enumerate(raw_edges):
        if not isinstance(raw, dict) or "source" not in raw or "target" not in raw:
            raise SourceError(path, f"{word} {i} is not an object with 'source' and 'target'")
        ends = _key(raw["source"]), _key(raw["target"])
        for end in ends:
            if end not in keys:
                raise SourceError(path, f"{word} {i} refers to unknown node {end!r}")
        weight = edge_weight(raw)
        if weight is None:
            raise SourceError(
                path, f"{word} {i} has weight {raw['weight']!r}; a weight is a positive number"
            )
        edges.append(EdgeSpec(ends[0], ends[1], weight, edge_type(raw)))

    graph = data.get("graph")
    name = graph.get("name") if isinstance(graph, dict) else None
    if not isinstance(name, str) or not name:
        name = Path(path).stem or "graph"
    return GraphData(nodes=nodes, edges=edges, name=name)


def _key(node_id: Any) -> str:
    # networkx writes tuple ids as JSON arrays; str() of the parsed list keeps them distinct.
    return str(node_id)
