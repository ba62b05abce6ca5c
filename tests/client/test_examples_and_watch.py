"""The examples run against a real server, and ``graphwire watch`` prints what it promises."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from graphwire.client import BlockingClient, ConnectError
from graphwire.client.watch import watch

from .conftest import ROOT, Harness, ServerFactory, ring_csv


async def run(*args: str, timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def example(name: str) -> str:
    path = ROOT / "examples" / name
    assert path.is_file()
    return str(path)


async def test_watch_communities(generous_server: Harness) -> None:
    code, out, err = await run(sys.executable, example("watch_communities.py"),
                               generous_server.base, "--seconds", "1")
    assert code == 0, err
    assert "200 nodes, 228 edges" in out
    assert out.count("community 0 (") == 2  # two looks, a second apart
    assert "centre (" in out and "nan" not in out


async def test_push_agents(generous_server: Harness) -> None:
    code, out, err = await run(sys.executable, example("push_agents.py"),
                               generous_server.base, "--agents", "3", "--seconds", "1.5")
    assert code == 0, err
    assert "added 3 agents" in out and "refused" not in out
    counts = out.split("queued ")[1]
    queued, sent = int(counts.split(",")[0]), int(counts.split("sent ")[1].split(" ")[0])
    acked = int(counts.split("acked ")[1].split(" ")[0])
    assert queued > 3 and sent == acked and "failed 0" in out
    assert "removed 3 agents" in out  # they leave the graph as they found it
    _, state = await generous_server.get("/api/graph/state")
    assert state["nodesCount"] == 200
    code, out, err = await run(sys.executable, example("push_agents.py"),
                               generous_server.base, "--agents", "2", "--seconds", "0.5",
                               "--keep")
    assert code == 0 and "removed" not in out, err
    _, state = await generous_server.get("/api/graph/state")
    assert state["nodesCount"] == 202


async def test_settle_after_setting(make_server: ServerFactory, tmp_path: Path) -> None:
    harness = await make_server(source=str(ring_csv(tmp_path / "small.csv", n=24)))
    code, out, err = await run(sys.executable, example("settle_after_setting.py"),
                               harness.base, "--value", "4.5")
    assert code == 0, err
    assert "repel_k: 3.0 -> 4.5 (revision 1)" in out
    assert "the layout moves" in out and "settled at seq" in out
    # durable and shared: the example puts the setting back unless told to keep it
    _, rest = await harness.get("/api/settings/visualisation.graphs.logseq.physics.repel_k")
    assert rest["value"] == 3.0 and rest["revision"] == 2
    code, out, err = await run(sys.executable, example("settle_after_setting.py"),
                               harness.base, "--value", "4.5", "--keep")
    assert code == 0, err
    assert "put back" not in out
    _, rest = await harness.get("/api/settings/visualisation.graphs.logseq.physics.repel_k")
    assert rest["value"] == 4.5


async def watch_lines(base: str, *args: str) -> list[dict[str, Any]]:
    code, out, err = await run(sys.executable, "-m", "graphwire.cli", "watch", base, *args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


async def test_watch_json_lines_from_the_command(generous_server: Harness) -> None:
    lines = await watch_lines(generous_server.base, "--json", "--duration", "2.5",
                              "--format", "q")
    check_json_lines(lines, "q")


async def test_watch_json_lines_v1_in_process(generous_server: Harness) -> None:
    out = io.StringIO()
    assert await watch(generous_server.base, as_json=True, duration=2.5, fmt="v1", out=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    check_json_lines(lines, "v1")
    stats = [d for d in lines if d.get("event") == "stats"]
    assert any(34.0 < s["bytesPerNode"] < 34.1 for s in stats if s["bytesPerNode"])


def check_json_lines(lines: list[dict[str, Any]], fmt: str) -> None:
    assert lines[0]["event"] == "connected"
    stats = [d for d in lines if d.get("event") == "stats"]
    assert 2 <= len(stats) <= 4
    assert all(s["format"] == fmt and s["state"] == "connected" for s in stats)
    assert any(s["framesPerSec"] > 0 for s in stats)
    summary = lines[-1]["summary"]
    assert set(summary) == {"frames", "reconnects", "bytes", "nodes", "lastSeq", "epoch"}
    assert summary["frames"] > 0 and summary["nodes"] == 200 and summary["reconnects"] == 0
    assert summary["bytes"] > 0 and summary["lastSeq"] > 0 and summary["epoch"] >= 1


async def test_watch_that_cannot_connect_fails_clearly(
        capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    code = await watch("http://127.0.0.1:9", as_json=True, duration=1, out=out,
                       connect_attempts=2)
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot connect" in err and "127.0.0.1:9" in err
    assert "summary" not in out.getvalue()


@pytest.mark.parametrize("name", ["watch_communities.py", "push_agents.py",
                                  "settle_after_setting.py"])
async def test_an_example_without_a_server_fails_fast_and_clearly(name: str) -> None:
    start = asyncio.get_running_loop().time()
    code, _, err = await run(sys.executable, example(name), "http://127.0.0.1:9", timeout=30)
    assert code == 1 and "cannot connect" in err and "127.0.0.1:9" in err
    assert "Traceback" not in err and "Task was destroyed" not in err, err
    assert "Unclosed" not in err and "Event loop is closed" not in err, err
    assert asyncio.get_running_loop().time() - start < 20  # three attempts, not a minute


def test_a_blocking_client_that_cannot_connect_leaves_nothing_running(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    before = set(threading.enumerate())
    with pytest.raises(ConnectError, match="after 3 attempts"):
        BlockingClient("http://127.0.0.1:9")
    with pytest.raises(ConnectError, match=r"within 1\.5 s"):  # tried until the timeout
        BlockingClient("http://127.0.0.1:9", timeout=1.5, connect_attempts=None)
    gc.collect()
    assert set(threading.enumerate()) <= before
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]


async def test_watch_terminal_view(generous_server: Harness) -> None:
    out = io.StringIO()
    assert await watch(generous_server.base, duration=1.5, out=out) == 0
    for word in ("state       connected", "frames/s", "bytes/s", "bytes/node", "layout",
                 "reconnects 0", "last change -"):
        assert word in out.getvalue()


def test_watch_tells_the_last_change_by_name() -> None:
    from graphwire.client.events import GraphChanged
    from graphwire.client.watch import _Stats

    stats = _Stats()
    stats.changed(GraphChanged(1, 1, 10, 20, False), 0.2)  # the first fill: no change yet
    assert stats.last_change == ""
    stats.changed(GraphChanged(1, 2, 11, 22, False, ("Big Idea",)), 5.4)
    assert stats.last_change == "at 5 s: +1 node (Big Idea), +2 edges"
    stats.changed(GraphChanged(1, 3, 7, 15, False, (), ("a", "b", "c", "d")), 9)
    assert stats.last_change == "at 9 s: -4 nodes (a, b, c and 1 more), -7 edges"
    stats.changed(GraphChanged(2, 1, 7, 15, True), 12)
    assert stats.last_change == "at 12 s: the graph was loaded again (epoch 2)"


async def test_watch_ended_by_sigterm_still_prints_its_summary(generous_server: Harness) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "graphwire.cli", "watch", generous_server.base, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while b'"stats"' not in await proc.stdout.readline():  # watching, for a second at least
            pass
        proc.send_signal(signal.SIGTERM)
        rest, err = await proc.communicate()
    assert proc.returncode == 0, err
    last = json.loads(rest.splitlines()[-1])
    assert last["summary"]["frames"] > 0 and last["summary"]["nodes"] == 200
