"""The bench convention: machine description, timing helpers and output as JSON or table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

Row = dict[str, Any]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = int(f.readline().split()[1])
            mem_gib = round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    import numpy

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memGiB": mem_gib,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
    }


def best_ms(fn: Callable[[], object], *, repeat: int = 20, min_time: float = 0.2) -> float:
    """Median wall time of ``fn`` in ms over at least ``repeat`` runs and ``min_time`` seconds."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
        if len(times) > 10_000:
            break
    return round(statistics.median(times), 4)


def emit(bench: str, rows: Sequence[Row], *, as_json: bool, extra: dict[str, Any] | None = None,
         out: Any = None) -> None:
    """Print the result as one JSON object, or as a table."""
    stream = out or sys.stdout
    doc: dict[str, Any] = {"bench": bench, "machine": machine(), "rows": list(rows)}
    if extra:
        doc.update(extra)
    if as_json:
        stream.write(json.dumps(doc) + "\n")
        return
    stream.write(format_table(rows) + "\n")


def format_table(rows: Sequence[Row]) -> str:
    """Rows as a Markdown table (columns in first-seen order)."""
    cols: list[str] = []
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
    return str(v)


def progress(message: str) -> None:
    """A progress line on stderr (never mixed into the JSON on stdout)."""
    if sys.stderr.isatty() or os.environ.get("GRAPHWIRE_BENCH_VERBOSE"):
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def positive(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0 (got {text})")
    return value


def int_list(text: str) -> list[int]:
    """A bench option's comma-separated integers (``--sizes 1000,2000``)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
