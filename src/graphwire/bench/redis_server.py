"""A real ``redis-server`` on a free port, in a folder of its own, that can be stopped and
restarted (the scale-out bench and tests use it).

Started with ``--save '' --appendonly no`` (nothing on disk: a restart comes back empty, the
harshest case for the cluster). Readiness is an event, not a sleep: the server's own
"Ready to accept connections" line on its standard output.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

READY = "Ready to accept connections"


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        self.binary = binary
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The URL for ``--redis``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        """Start it and wait until it accepts connections."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder), "--loglevel", "notice"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # blocks on the next line: the event we wait for
            if READY in line:
                return
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """Stop it (SIGKILL: what a crash looks like to its clients)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def restart(self) -> None:
        """Kill it and start a fresh, empty one on the same port."""
        self.stop()
        self.start()
