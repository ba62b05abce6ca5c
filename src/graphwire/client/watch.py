"""``graphwire watch URL``: a live view of a server's stream from the client's side.

The terminal view redraws once a second: connection state, frames/s, bytes/s, bytes per
node, settled or moving, reconnects. With ``--json`` it prints one JSON object per line instead:
``{"event": NAME, ...}`` for each connection event, ``{"event": "stats", ...}`` every second,
and a last line ``{"summary": {frames, reconnects, bytes, nodes, lastSeq, epoch}}``. It exits
0 when ``--duration`` (counted from the established connection) ends or on Ctrl-C, and 1 with
a message when it cannot connect at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from graphwire.protocol.control import Format
from graphwire.protocol.header import Kind

from .backoff import Backoff
from .connection import Client
from .errors import ClientError
from .events import Event, Frame, GraphChanged

CONNECTION_EVENTS = ("connected", "disconnected", "reconnecting", "graph_changed",
                     "rate_limit_warning", "error")


class _Stats:
    """Per-second figures of the position stream (the totals are the client's)."""

    def __init__(self) -> None:
        self.window_frames = self.window_bytes = self.window_records = 0
        self.last_change = ""  # what the last graph_changed did, for a person
        self.edges: int | None = None  # edges after the last graph_changed

    def changed(self, event: GraphChanged, at: float) -> None:
        edges, self.edges = self.edges, event.edges_count
        if event.refetched:
            self.last_change = f"at {at:.0f} s: the graph was loaded again (epoch {event.epoch})"
            return
        if edges is None:
            return  # the first fill of the mirror: nothing changed yet
        parts = [f"{sign}{len(keys)} node{'s' * (len(keys) != 1)} ({_few(keys)})"
                 for sign, keys in (("+", event.added), ("-", event.removed)) if keys]
        parts.append(f"{event.edges_count - edges:+d} edges")
        self.last_change = f"at {at:.0f} s: {', '.join(parts)}"

    def frame(self, event: Frame) -> None:
        if event.kind == Kind.SSSP:
            return
        self.window_frames += 1
        self.window_bytes += event.size
        self.window_records += event.nodes

    def take(self, seconds: float) -> dict[str, Any]:
        per = max(seconds, 1e-9)
        out = {"framesPerSec": round(self.window_frames / per, 2),
               "bytesPerSec": round(self.window_bytes / per, 1),
               "bytesPerNode": round(self.window_bytes / self.window_records, 3)
               if self.window_records else None}
        self.window_frames = self.window_bytes = self.window_records = 0
        return out


def _few(keys: tuple[str, ...], most: int = 3) -> str:
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


def _print_json(out: TextIO, doc: dict[str, Any]) -> None:
    out.write(json.dumps(doc, separators=(",", ":")) + "\n")
    out.flush()


async def watch(url: str, *, as_json: bool = False, duration: float | None = None,
                fmt: Format = "q", token: str | None = None, connect_attempts: int = 3,
                out: TextIO = sys.stdout) -> int:
    """Run the view; returns the exit status."""
    client = Client(url, format=fmt, token=token, connect_attempts=connect_attempts,
                    backoff=Backoff())
    stats = _Stats()
    started = time.monotonic()

    def on_event(event: Event) -> None:
        if isinstance(event, Frame):
            stats.frame(event)
            return
        if isinstance(event, GraphChanged):
            stats.changed(event, time.monotonic() - started)
        if as_json and event.name in CONNECTION_EVENTS:
            doc = event.to_json()
            doc["t"] = round(time.monotonic() - started, 3)
            _print_json(out, doc)

    client.on("*", on_event)
    try:
        await client.start()
    except ClientError as exc:
        print(f"graphwire watch: {exc}", file=sys.stderr)
        return 1
    # SIGTERM (`timeout`, a service manager) ends the watch as Ctrl-C does: with the summary
    with _end_on_sigterm() as ended:
        return await _watching(client, stats, url, as_json=as_json, duration=duration,
                               started=started, out=out, ended=ended)


async def _watching(client: Client, stats: _Stats, url: str, *, as_json: bool,
                    duration: float | None, started: float, out: TextIO,
                    ended: asyncio.Event) -> int:
    """The view's loop, from a standing connection to the summary."""
    try:
        # the duration is time spent watching, from the moment the connection stands
        deadline = None if duration is None else time.monotonic() + duration
        last = time.monotonic()
        while deadline is None or time.monotonic() < deadline:
            wait = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(wait)
            if client.error is not None:
                print(f"graphwire watch: {client.error}", file=sys.stderr)
                return 1
            now = time.monotonic()
            row = _row(client, stats.take(now - last))
            last = now
            if as_json:
                _print_json(out, {"event": "stats", "t": round(now - started, 3), **row})
            else:
                _draw(out, url, row, stats.last_change)
    except asyncio.CancelledError:
        if not ended.is_set():
            raise
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # the cancel was ours, to end the loop: it is done
    finally:
        summary = {"frames": client.frames, "reconnects": client.reconnects,
                   "bytes": client.bytes_received, "nodes": len(client.mirror.nodes),
                   "lastSeq": client.mirror.seq, "epoch": client.mirror.epoch}
        await client.close()
        if as_json:
            _print_json(out, {"summary": summary})
    return 0


@contextlib.contextmanager
def _end_on_sigterm() -> Iterator[asyncio.Event]:
    """While inside, SIGTERM cancels the running task; the event says that this is why."""
    ended = asyncio.Event()
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def end() -> None:
        ended.set()
        if task is not None:
            task.cancel()

    # not where signals can be handled (a thread other than the main one, or Windows): Ctrl-C
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, end)
    try:
        yield ended
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)


def _row(client: Client, window: dict[str, Any]) -> dict[str, Any]:
    m = client.mirror
    return {"state": client.state, "seq": m.seq, "epoch": m.epoch, "nodes": len(m.nodes),
            "frames": client.frames, **window, "settled": m.settled,
            "reconnects": client.reconnects, "format": client.format}


def _draw(out: TextIO, url: str, row: dict[str, Any], last_change: str = "") -> None:
    clear = "\x1b[H\x1b[2J" if out.isatty() else ""
    bpn = row["bytesPerNode"]
    lines = [
        f"graphwire watch {url}",
        f"  state       {row['state']}   reconnects {row['reconnects']}",
        f"  stream      {row['format']}   epoch {row['epoch']}   seq {row['seq']}   "
        f"{row['nodes']} nodes",
        f"  frames/s    {row['framesPerSec']:.1f}   ({row['frames']} in all)",
        f"  bytes/s     {row['bytesPerSec']:,.0f}",
        f"  bytes/node  {'-' if bpn is None else f'{bpn:.2f}'}",
        f"  layout      {'settled' if row['settled'] else 'moving'}",
        f"  last change {last_change or '-'}",
    ]
    out.write(clear + "\n".join(lines) + "\n" + ("" if clear else "\n"))
    out.flush()
