"""``graphwire bench browser``: what the page costs per frame, measured in headless Chromium.

A graphwire server (its own process) serves a Barabási–Albert graph (m = 3, seed 1) of 10,000
and of 100,000 nodes, kept moving (no cooling, no settling, no multilevel start: every node
keeps the small oscillation of a layout at full heat; one physics step a snapshot, at 5 Hz
for 10,000 nodes and 2 Hz for 100,000, which is what two cores step). The browser client
(Debian's Chromium through Playwright, WebGL on SwiftShader) subscribes in ``q`` and in
``v2``, once drawing (``draw: swiftshader``) and once with drawing paused (``draw: off``, the
page's ``?draw=0``): without a GPU the software rasteriser takes most of the two cores, and
the decode worker's wall time then measures the contention more than the decoder. Rows
``{nodes, format, draw, decodeMs, applyMs, bytesPerNode, frames}``:

- ``decodeMs``: the median, over the last 50 frames, of the decode worker's time per position
  frame (gzip inflate, decode, positions by id, scatter into render slots);
- ``applyMs``: the median main-thread time to apply a decoded frame (blend the interpolation's
  start, copy the array into the instanced attribute);
- ``bytesPerNode``: the median position frame's size over the node count: what was decoded
  (a layout that moves more makes bigger ``q`` frames, and their decode costs more).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .fanout import MOVING, wait_ready
from .redis_server import free_port
from .report import Row, int_list, progress

SIZES = (10_000, 100_000)
FORMATS = ("q", "v2")
RATE_HZ = {10_000: 5.0, 100_000: 2.0}
WARMUP_FRAMES = 5
FRAMES = 20


def write_ba_graph(path: Path, nodes: int, m: int = 3, seed: int = 1) -> Path:
    """A Barabási–Albert graph as a CSV edge list (keys zero-padded, so ids follow numbers)."""
    import networkx as nx

    width = len(str(nodes - 1))
    g = nx.barabasi_albert_graph(nodes, m, seed=seed)
    lines = ["source,target"] + [f"n{a:0{width}d},n{b:0{width}d}" for a, b in g.edges]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_server(csv: Path, db: Path, *, rate_hz: float) -> tuple[subprocess.Popen[str], int]:
    """``graphwire serve`` in its own process, kept moving, physics at the stream rate."""
    port = free_port()
    args = [sys.executable, "-m", "graphwire.cli", "serve", str(csv), "--port", str(port),
            "--db", str(db), "--physics-hz", str(rate_hz)]
    for path, value in MOVING.items():
        args += ["--set", f"{path}={json.dumps(value)}"]
    for path in ("minUpdateRate", "maxUpdateRate"):
        args += ["--set", f"system.websocket.{path}={rate_hz}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_ready(proc, "graphwire serve")
    return proc, port


async def measure_page(url: str, nodes: int, fmt: str, *, draw: bool = True,
                       warmup: int = WARMUP_FRAMES, frames: int = FRAMES) -> Row:
    """Open the client at ``url`` and read its medians after ``frames`` frames."""
    from playwright.async_api import async_playwright

    from .chromium import launch

    timeout = 60_000 + 30 * nodes
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"{url}?format={fmt}" + ("" if draw else "&draw=0"))
            await page.wait_for_function(
                f"window.graphwire && window.graphwire.nodeCount === {nodes} && "
                f"window.graphwire.framesApplied >= {warmup}", timeout=timeout)
            await page.wait_for_function(
                f"window.graphwire.framesApplied >= {warmup + frames}", timeout=timeout)
            got = await page.evaluate(
                "({decodeMs: graphwire.decodeMs, applyMs: graphwire.applyMs,"
                " frameBytes: graphwire.frameBytes,"
                " frames: graphwire.framesApplied, settled: graphwire.settled})")
        finally:
            await browser.close()
    return {"nodes": nodes, "format": fmt, "draw": "swiftshader" if draw else "off",
            "decodeMs": round(got["decodeMs"], 3),
            "applyMs": round(got["applyMs"], 3),
            "bytesPerNode": round(got["frameBytes"] / nodes, 3), "frames": got["frames"]}


def run(argv: Sequence[str] | None = None) -> list[Row]:
    """All rows of the browser bench (``argv``: the options after ``bench browser``)."""
    parser = argparse.ArgumentParser(prog="graphwire bench browser")
    parser.add_argument("--sizes", type=int_list, default=list(SIZES),
                        help=f"node counts (default {','.join(map(str, SIZES))})")
    parser.add_argument("--formats", type=lambda v: v.split(","), default=list(FORMATS),
                        help=f"stream formats (default {','.join(FORMATS)})")
    parser.add_argument("--frames", type=int, default=FRAMES,
                        help=f"frames measured after the warm-up (default {FRAMES})")
    args = parser.parse_args(list(argv or []))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for nodes in args.sizes:
            csv = write_ba_graph(work / f"ba{nodes}.csv", nodes)
            proc, port = start_server(csv, work / f"bench{nodes}.db",
                                      rate_hz=RATE_HZ.get(nodes, 5.0 if nodes <= 10_000 else 2.0))
            try:
                for fmt in args.formats:
                    for draw in (True, False):
                        progress(f"browser: {nodes} nodes, {fmt}, draw {draw}")
                        rows.append(asyncio.run(measure_page(
                            f"http://127.0.0.1:{port}/", nodes, fmt, draw=draw,
                            frames=args.frames)))
                        progress(f"  {rows[-1]}")
            finally:
                proc.terminate()
                proc.wait(30)
    return rows
