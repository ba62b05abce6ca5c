"""``graphwire serve`` processes for the cluster tests: a simulation, gateways, standbys.

Each process binds port 0 and is ready when it prints its ``serving ... on URL`` line (an event
read from its output, not a sleep). Output goes to a log file per process, shown when a test
fails, so a crash is never silent.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ..server.conftest import ring_csv

__all__ = ["Cluster", "Process", "ring_csv"]

READY = re.compile(r"serving .* on (http://\S+)")


class Process:
    """One ``graphwire serve`` process."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._line = threading.Condition()

    def start(self, timeout: float = 120.0) -> Process:
        """Start it and wait until it serves."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "graphwire.cli", "serve", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout):
            self.kill()
            raise RuntimeError(f"{self.name} did not start:\n{self.output()}")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.proc.stdout:
                with self._line:
                    self.lines.append(line)
                    self._line.notify_all()
                log.write(line)
                log.flush()
                m = READY.search(line)
                if m and not self._ready.is_set():
                    self.url = m.group(1).rstrip("/")
                    self._ready.set()

    def wait_line(self, pattern: str, timeout: float = 60.0) -> str:
        """Block until the process prints a line matching ``pattern`` (run it in a thread)."""
        regex = re.compile(pattern)
        with self._line:
            if not self._line.wait_for(lambda: any(regex.search(x) for x in self.lines),
                                       timeout):
                raise AssertionError(f"{self.name} never printed {pattern!r}")
            return next(x for x in self.lines if regex.search(x))

    def output(self) -> str:
        """Everything it printed so far."""
        return "".join(self.lines)

    @property
    def port(self) -> int:
        """The port it serves on."""
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self) -> None:
        """SIGTERM: a clean stop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class Cluster:
    """Simulations and gateways sharing one Redis, started on demand, killed at the end."""

    def __init__(self, folder: Path, redis_url: str, source: Path) -> None:
        self.folder = folder
        self.redis_url = redis_url
        self.source = source
        self.procs: list[Process] = []

    def _start(self, name: str, role: str, extra: list[str]) -> Process:
        args = [str(self.source), "--port", "0", "--redis", self.redis_url, "--role", role,
                "--node-id", name, *extra]
        proc = Process(name, args, self.folder / f"{name}.log")
        self.procs.append(proc)
        return proc.start()

    def simulation(self, name: str = "sim-a", *extra: str) -> Process:
        """A simulation with its own settings file."""
        return self._start(name, "simulation",
                           ["--db", str(self.folder / f"{name}.db"), *extra])

    def gateway(self, name: str, *extra: str) -> Process:
        """A gateway."""
        return self._start(name, "gateway", list(extra))

    def stop(self) -> None:
        """Kill every process still running."""
        for p in self.procs:
            p.kill()

    def logs(self) -> str:
        """Every process's output (for a failing test's report)."""
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in self.procs)
