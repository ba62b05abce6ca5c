"""Servers for the client tests: in process (fast), or ``graphwire serve`` as a subprocess
(for SIGKILL and restarts on the same port), each with its own SQLite file."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import Harness, ServerFactory, make_server, ring_csv

__all__ = ["Harness", "ServerFactory", "make_server", "ring_csv"]

ROOT = Path(__file__).resolve().parents[2]
# plenty of control tokens: tests open many connections from one address
GENEROUS = tuple(f"system.rateLimits.{c}.{k}={v}"
                 for c in ("control", "settings", "positions")
                 for k, v in (("perMinute", 1_000_000), ("burst", 100_000)))


GENEROUS_OVERRIDES = {k: int(v) for k, v in (item.split("=", 1) for item in GENEROUS)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``graphwire serve`` in a subprocess: start, SIGKILL, start again on the same port."""

    def __init__(self, source: Path, db: Path, sets: tuple[str, ...] = GENEROUS,
                 extra: tuple[str, ...] = ()) -> None:
        self.source, self.db, self.sets, self.extra = source, db, sets, extra
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [sys.executable, "-m", "graphwire.cli", "serve", str(self.source),
                "--port", str(self.port), "--db", str(self.db), *self.extra]
        for s in self.sets:
            args += ["--set", s]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if f":{self.port}" not in line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"server did not start: {line}{err}")

    async def astart(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.start)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr) if self.proc else ():
            if stream is not None:
                stream.close()
        self.proc = None


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Any]:
    """A factory of subprocess servers on a 200-node ring; every one is killed at the end."""
    made: list[ServerProcess] = []

    def make(**kw: Any) -> ServerProcess:
        sp = ServerProcess(ring_csv(tmp_path / "ring.csv"), tmp_path / f"p{len(made)}.db", **kw)
        made.append(sp)
        return sp

    yield make
    for sp in made:
        sp.kill()


@pytest.fixture
async def generous_server(make_server: ServerFactory) -> AsyncIterator[Harness]:
    """An in-process server whose rate limits do not get in a test's way."""
    yield await make_server(overrides=dict(GENEROUS_OVERRIDES))
