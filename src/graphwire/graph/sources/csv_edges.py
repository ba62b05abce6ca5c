"""CSV edge lists: ``source,target[,weight]`` rows.

The first row is a header, and skipped, when it reads ``source,target`` or
``source,target,weight`` (any case), or when its third column is not a number. Keys are the
cells with surrounding whitespace stripped; every endpoint is a node. An empty weight cell means
1; columns after the third are ignored; blank rows are skipped. Quoting is strict: a quote that
is never closed is an error naming the line where its row starts.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from pathlib import Path

from tqdm import tqdm

from ..model import EdgeSpec, GraphData, NodeSpec
from .errors import SourceError
from .progress import LARGE_LINE_COUNT, show_progress
from .text_file import read_text

_HEADERS = (["source", "target"], ["source", "target", "weight"])


def load_csv_edges(path: str | os.PathLike[str], *, progress: bool | None = None) -> GraphData:
    """Load a CSV edge list; ``progress`` as in :func:`~graphwire.graph.sources.load_source`."""
    text = read_text(path)
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    show = show_progress(progress, lines, LARGE_LINE_COUNT)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    keys: dict[str, None] = {}  # endpoints in order of first appearance
    edges: list[EdgeSpec] = []
    first = True
    done = 0  # lines consumed so far; the next row starts on line done + 1
    with tqdm(total=lines, disable=not show, file=sys.stderr, unit="line") as bar:
        try:
            for row in reader:
                line, done = done + 1, reader.line_num
                bar.update(done - line + 1)
                cells = [cell.strip() for cell in row]
                if not any(cells):
                    continue
                if first:
                    first = False
                    if _is_header(cells):
                        continue
                edges.append(_edge(path, cells, line))
                keys[edges[-1].source] = None
                keys[edges[-1].target] = None
        except csv.Error as e:
            # The row that failed starts on line done + 1 (an unclosed quote fails at the end).
            raise SourceError(path, f"not valid CSV: {e}", done + 1) from None
    if not edges:
        raise SourceError(path, "has no edges (rows of source,target[,weight])")
    name = Path(path).stem or "graph"
    return GraphData(nodes=[NodeSpec(key) for key in keys], edges=edges, name=name)


def _is_header(cells: list[str]) -> bool:
    if [c.lower() for c in cells[:3]] in _HEADERS:
        return True
    return len(cells) >= 3 and cells[2] != "" and _number(cells[2]) is None


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _edge(path: str | os.PathLike[str], cells: list[str], line: int) -> EdgeSpec:
    if len(cells) < 2:
        raise SourceError(path, "a row needs two columns: source,target[,weight]", line)
    source, target = cells[0], cells[1]
    if not source or not target:
        raise SourceError(path, f"empty {'source' if not source else 'target'} key", line)
    weight = 1.0
    if len(cells) >= 3 and cells[2]:
        number = _number(cells[2])
        if number is None or not math.isfinite(number) or number <= 0:
            raise SourceError(path, f"weight {cells[2]!r} is not a positive number", line)
        weight = number
    return EdgeSpec(source, target, weight)
