"""A layout by node key, and the positions file that ``graphwire layout --out`` writes and
``graphwire serve --layout`` reads.

Ids belong to one epoch of one server; keys belong to the source, so a layout is kept by key:
for every node its position and whether it is pinned, and for the whole layout whether it had
settled. The file is JSON::

    {"format": "graphwire-layout", "version": 1, "settled": true, "steps": 1234,
     "nodes": [{"key": "a", "x": 1.0, "y": 2.0, "z": 3.0, "pinned": true, "id": 0}, ...]}

``pinned`` may be left out (false); ``id`` (the node's id when the file was written) and
``steps`` are for people reading the file and are ignored on reading. Files written before
``format`` and ``version`` existed (the same ``nodes`` list) read the same.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .model import Graph
from .sources.errors import SourceError

FORMAT = "graphwire-layout"
VERSION = 1


@dataclass(slots=True, eq=False)
class Layout:
    """Positions and pins by node key, and whether the layout had settled."""

    keys: list[str]
    pos: npt.NDArray[np.float32]  # (n, 3)
    pinned: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))
    settled: bool = False  # (pinned left out: nothing pinned)

    def __post_init__(self) -> None:
        self.pos = np.asarray(self.pos, np.float32).reshape(-1, 3)
        if self.pinned.shape[0] == 0:
            self.pinned = np.zeros(len(self.keys), bool)
        if self.pos.shape[0] != len(self.keys) or self.pinned.shape[0] != len(self.keys):
            raise ValueError("a layout needs one position and one pin flag per key")

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def of_graph(cls, g: Graph, *, settled: bool = False) -> Layout:
        """The positions and pins of a graph's live nodes."""
        live = g.live_ids()
        return cls([g.keys[i] for i in live.tolist()], g.pos[live].copy(),
                   g.pinned[live].copy(), settled)

    def apply(self, g: Graph) -> npt.NDArray[np.int64]:
        """Put the graph's live nodes that have a key here at their position (and pin them if
        pinned); returns their ids. Other nodes are left as they are."""
        ids, rows = [], []
        for row, key in enumerate(self.keys):
            nid = g.id_of(key)
            if nid is not None:
                ids.append(nid)
                rows.append(row)
        idx = np.asarray(ids, np.int64)
        g.pos[idx] = self.pos[rows]
        g.vel[idx] = 0.0
        g.pinned[idx] = self.pinned[rows]
        return idx


def write_layout(path: str | os.PathLike[str], layout: Layout,
                 ids: list[int] | None = None, **extra: Any) -> None:
    """Write a positions file atomically (a temporary file, then a rename); OSError if the
    folder is missing or not writable, ValueError for a position that is not finite (no file is
    left behind either way). ``extra`` fields (``steps``) are added to the object."""
    nodes = []
    for i, key in enumerate(layout.keys):
        x, y, z = (float(c) for c in layout.pos[i])
        node: dict[str, Any] = {"key": key, "x": x, "y": y, "z": z}
        if layout.pinned[i]:
            node["pinned"] = True
        if ids is not None:
            node["id"] = ids[i]
        nodes.append(node)
    doc = {"format": FORMAT, "version": VERSION, "settled": layout.settled, **extra,
           "nodes": nodes}
    tmp = f"{os.fspath(path)}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_layout(path: str | os.PathLike[str]) -> Layout:
    """Read a positions file; any problem is a :class:`SourceError` naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise SourceError(path, "no such file") from None
    except OSError as exc:
        raise SourceError(path, f"cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise SourceError(path, f"is not a layout file: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise SourceError(path, 'is not a layout file: expected {"nodes": [...]}')
    if doc.get("format", FORMAT) != FORMAT or doc.get("version", VERSION) != VERSION:
        raise SourceError(path, f"is a layout file of another kind or version "
                                f"({doc.get('format')!r} {doc.get('version')!r})")
    keys: list[str] = []
    pos: list[tuple[float, float, float]] = []
    pinned: list[bool] = []
    seen: set[str] = set()
    for n, node in enumerate(doc["nodes"]):
        where = f"node {n}"
        if not isinstance(node, dict) or not isinstance(node.get("key"), str):
            raise SourceError(path, f"{where} needs a string 'key'")
        coords = [node.get(a) for a in ("x", "y", "z")]
        if not all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c)
                   for c in coords):
            raise SourceError(path, f"{where} ({node['key']!r}) needs finite numbers x, y, z")
        if node["key"] in seen:
            raise SourceError(path, f"{where}: the key {node['key']!r} appears twice")
        seen.add(node["key"])
        keys.append(node["key"])
        pos.append((float(coords[0]), float(coords[1]), float(coords[2])))  # type: ignore[arg-type]
        pinned.append(node.get("pinned") is True)
    return Layout(keys, np.asarray(pos, np.float32).reshape(-1, 3), np.asarray(pinned, bool),
                  doc.get("settled") is True)
