"""The physics and trace benches run and report the figures their rows name."""

from __future__ import annotations

import importlib
import time

import pytest

from graphwire.bench import physics, trace


def test_trace_rows_on_a_short_trace() -> None:
    rows = trace.standard_rows(snapshots=12, nodes=500)
    by = {r["format"]: r for r in rows}
    assert set(by) == {"v2", "q"}
    assert 36.0 <= by["v2"]["bytesPerMovedNode"] < 36.1  # 36-byte records plus headers
    assert 0 < by["q"]["bytesPerNodePerSnapshot"] < by["v2"]["bytesPerNodePerSnapshot"] / 4
    assert all(r["trace"] == "ba10k" for r in rows)


def test_v2_stream_sends_only_nodes_past_the_deadband() -> None:
    snaps = list(trace.standard_trace(snapshots=3, nodes=300))
    stream = trace.V2Stream(deadband=1e9)
    first, n0 = stream.encode(snaps[0])
    assert n0 == 300 and first[1] & 0x02
    _, n1 = stream.encode(snaps[1])
    assert n1 == 0


def test_physics_step_row_is_the_median_of_real_steps() -> None:
    t0 = time.perf_counter()
    small = physics.graphwire_step_ms(300, timed=3)
    wall_ms = (time.perf_counter() - t0) * 1000
    assert 0 < small < wall_ms  # one step's time, in ms, not the whole run or seconds
    large = physics.graphwire_step_ms(5000, timed=3)
    assert large > small  # the step grows with the graph


def test_fanout_rows_from_real_processes() -> None:
    from graphwire.bench import fanout

    rows = fanout.run(["--sizes", "4", "--v2-sizes", "4"], baseline_clients=2, warmup=1.5,
                      window=2.0)
    by = {(r["server"], r["format"]): r for r in rows}
    assert set(by) == {("graphwire", "q"), ("graphwire", "v2"), ("baseline-json", "json")}
    q, v2 = by["graphwire", "q"], by["graphwire", "v2"]
    for r in (q, v2):
        assert r["clients"] == 4 and r["framesPerClientPerSec"] > 2
        assert 0 < r["latencyP50Ms"] <= r["latencyP99Ms"] < 1000
    assert q["bytesPerNode"] < 6 < v2["bytesPerNode"] <= 36.1  # V2: nodes past the deadband
    assert by["baseline-json", "json"]["bytesPerNode"] > 100


def test_settings_bench_rows() -> None:
    from graphwire.bench import settings

    rows = settings.run(["--sizes", "3", "--sets", "20"])
    assert rows[0]["clients"] == 3 and 0 < rows[0]["p50Ms"] <= rows[0]["p99Ms"] < 1000
    assert rows[1]["commitsPerSec"] > 10
    # the Snapshot of every setting is gzip'd as the contract says: over 256 bytes, it shrinks
    assert rows[2]["snapshotGzipRatio"] > 1.5


def test_browser_bench_rows() -> None:
    import pytest

    from graphwire.bench import browser
    from graphwire.bench.chromium import chromium_path
    from graphwire.server.config import WEB_DIR

    if chromium_path() is None or not (WEB_DIR / "node_modules" / "three").is_dir():
        pytest.skip("needs Chromium and the client's npm packages (make setup)")
    rows = browser.run(["--sizes", "2000", "--formats", "q,v2", "--frames", "3"])
    assert [(r["nodes"], r["format"], r["draw"]) for r in rows] == [
        (2000, "q", "swiftshader"), (2000, "q", "off"), (2000, "v2", "swiftshader"),
        (2000, "v2", "off")]
    for r in rows:
        # the page's clock is coarsened to 0.1 ms: a 2,000-node v2 frame can decode in "0"
        assert 0 <= r["decodeMs"] < 1000 and 0 <= r["applyMs"] < 100 and r["frames"] >= 8
        assert 0 < r["bytesPerNode"] < (37 if r["format"] == "v2" else 12)


def test_live_bench_rows_from_a_real_server() -> None:
    from graphwire.bench import live

    rows = live.run(["--sizes", "200", "--trials", "5", "--settle", "5"])
    (row,) = rows
    assert row["pages"] == 200 and row["samples"] == 5
    assert 0 < row["p50Ms"] <= row["p99Ms"] < 30_000
    assert isinstance(row["settled"], bool)


def test_every_bench_takes_its_options_from_the_command_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`graphwire bench NAME` hands the options after NAME to the bench's ``run``: each bench
    either takes none or reads them (one that took them as its sizes printed no rows)."""
    import inspect
    import json

    from graphwire.cli import BENCHES, main

    for name in BENCHES:
        params = list(inspect.signature(
            importlib.import_module(f"graphwire.bench.{name}").run).parameters.values())
        assert not params or params[0].name in ("argv", "options"), name
        assert all(p.kind is p.KEYWORD_ONLY for p in params[1:]), name
    assert main(["bench", "codec", "--json", "--sizes", "500"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows and {r["nodes"] for r in rows} == {500}
