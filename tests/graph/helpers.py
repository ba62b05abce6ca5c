"""Helpers for the source tests: write files, and read a GraphData as plain sets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from graphwire.graph import GraphData, NodeSpec


def write(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``{relative path: text or bytes}`` under ``root`` and return ``root``."""
    for rel, content in files.items():
        file = root / rel
        file.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            file.write_bytes(content)
        else:
            file.write_text(content, encoding="utf-8")
    return root


def keys(data: GraphData) -> set[str]:
    """The node keys."""
    return {n.key for n in data.nodes}


def edge_set(data: GraphData) -> set[tuple[str, str, str | None]]:
    """The edges as ``(source key, target key, type)``."""
    return {(e.source, e.target, e.type) for e in data.edges}


def node(data: GraphData, key: str) -> NodeSpec:
    """The node spec with this key."""
    return next(n for n in data.nodes if n.key == key)
