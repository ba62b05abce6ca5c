"""``graphwire bench live``: from a page written to disk to a client holding a frame that shows it.

A vault of N pages (each links to three random others, seeded) is served by ``graphwire serve``
in its own process, watching the vault (the defaults: 50 ms of quiet ends a burst). One client
subscribes to ``q`` at 200 ms (the contract's default interval). Once the layout has settled (or
after ``--settle`` seconds), each trial writes a new page linking two random pages and measures
until the client has applied a ``q`` frame that holds the new node's id (announced by the
``graph_changed`` before it). Rows ``{pages, samples, p50Ms, p99Ms, settled}``; ``settled``
says whether the layout was at rest when the trials began. Trials follow one another at once,
each after the previous one's frame arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .fanout import wait_ready
from .redis_server import free_port
from .report import Row, int_list, progress

SIZES = (1_000, 10_000)
TRIALS = 50
SETTLE_S = 60.0
TIMEOUT_S = 30.0


def write_vault(root: Path, pages: int, seed: int = 1) -> list[str]:
    """A vault of ``pages`` pages (``n00000.md`` …), each linking three random others."""
    rng = random.Random(seed)
    names = [f"n{i:05d}" for i in range(pages)]
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        links = " ".join(f"[[{rng.choice(names)}]]" for _ in range(3))
        (root / f"{name}.md").write_text(f"- {name} links {links}\n", encoding="utf-8")
    return names


async def _trials(port: int, vault: Path, names: list[str], trials: int,
                  settle_s: float) -> tuple[list[float], bool]:
    import websockets

    from graphwire.protocol import QDecoder

    rng = random.Random(2)
    dec = QDecoder()
    latencies: list[float] = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=2**28) as ws:
        await ws.send(json.dumps({"type": "subscribe", "format": "q", "intervalMs": 200}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle_s
        pending: dict[str, float] = {}  # key -> when written
        waiting: dict[int, float] = {}  # id -> when its page was written

        async def read(until_settled: bool) -> None:
            left = (deadline - loop.time()) if until_settled else TIMEOUT_S
            msg = await asyncio.wait_for(ws.recv(), max(0.01, left))
            if isinstance(msg, str):
                doc = json.loads(msg)
                if doc.get("type") == "graph_changed" and not doc.get("refetch"):
                    for node in doc["added"]["nodes"]:
                        if node["key"] in pending:
                            waiting[node["id"]] = pending.pop(node["key"])
            elif msg[0] == 0x03:
                dec.apply(msg)
                if waiting:
                    now = time.time()
                    for nid in [i for i in waiting if np.any(dec.ids == i)]:
                        latencies.append((now - waiting.pop(nid)) * 1000)

        while not (dec.key_seq is not None and dec.settled) and loop.time() < deadline:
            try:
                await read(True)
            except TimeoutError:
                break
        settled = dec.settled
        for t in range(trials):
            key = f"bench live {t:03d}"
            a, b = rng.sample(names, 2)
            pending[key] = time.time()
            (vault / f"{key}.md").write_text(f"- new page: [[{a}]] and [[{b}]]\n",
                                             encoding="utf-8")
            while len(latencies) <= t:
                await read(False)
    return latencies, settled


def run_size(pages: int, trials: int = TRIALS, settle_s: float = SETTLE_S) -> Row:
    """One row: a vault of ``pages`` pages served in its own process."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vault = work / "vault"
        names = write_vault(vault, pages)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "graphwire.cli", "serve", str(vault), "--port", str(port),
             "--db", str(work / "bench.db")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_ready(proc, "graphwire serve")
            latencies, settled = asyncio.run(_trials(port, vault, names, trials, settle_s))
        finally:
            proc.terminate()
            proc.wait(30)
    ms = np.asarray(latencies)
    return {"pages": pages, "samples": int(ms.shape[0]),
            "p50Ms": round(float(np.percentile(ms, 50)), 1),
            "p99Ms": round(float(np.percentile(ms, 99)), 1), "settled": settled}


def run(options: list[str]) -> list[Row]:
    """All rows (``--sizes 1000,10000``, ``--trials 50``, ``--settle 60``)."""
    parser = argparse.ArgumentParser(prog="graphwire bench live")
    parser.add_argument("--sizes", type=int_list, default=list(SIZES),
                        help="vault sizes in pages, comma-separated (default 1000,10000)")
    parser.add_argument("--trials", type=int, default=TRIALS, help="pages written per size")
    parser.add_argument("--settle", type=float, default=SETTLE_S,
                        help="seconds to wait for the layout to settle before the trials")
    args = parser.parse_args(options)
    rows = []
    for pages in args.sizes:
        progress(f"live: {pages} pages")
        rows.append(run_size(pages, args.trials, args.settle))
        progress(f"  {rows[-1]}")
    return rows
