"""A 100,000-node graph (Barabási–Albert, m = 3) in the browser while its layout moves (issue 8).

The page must load it, apply frames and answer a search. Software rendering (SwiftShader) makes
this the slowest browser test; it is marked ``slow`` and still part of ``make test``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from graphwire.bench.browser import write_ba_graph
from graphwire.server.keys import GRAPH_SERVICE

from .conftest import Pages, needs_browser, wait_frames

pytestmark = [needs_browser, pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(400)]

MOVING = {
    "visualisation.graphs.logseq.physics.temperature": 0.05,
    "visualisation.graphs.logseq.physics.cooling_rate": 0.0,
    "visualisation.graphs.logseq.physics.settle_energy": 0.0,
    "system.websocket.minUpdateRate": 2.0,
    "system.websocket.maxUpdateRate": 2.0,
}


async def test_a_100k_node_graph_loads_moves_and_answers_a_search(
        serve, pages: Pages, tmp_path: Path) -> None:
    csv = write_ba_graph(tmp_path / "ba100k.csv", 100_000)
    served = await serve(source=str(csv), overrides=MOVING, physics_hz=2.0)
    page = await pages.open(served.base + "/")
    await page.wait_for_function("window.graphwire && window.graphwire.nodeCount === 100000",
                                 timeout=120_000)
    edges = served.core[GRAPH_SERVICE].graph.edge_count
    assert await page.evaluate("window.graphwire.edgeCount") == edges
    await wait_frames(page, 3, timeout=120_000)
    seq = await page.evaluate("window.graphwire.lastSeq")
    assert await page.evaluate("window.graphwire.settled") is False
    search = page.get_by_test_id("search")
    await search.fill("n50000")
    await search.press("Enter")
    await page.wait_for_function("window.graphwire.selected === 'n50000'", timeout=60_000)
    await page.wait_for_function("window.graphwire.ssspReached > 0", timeout=60_000)
    assert await page.evaluate("window.graphwire.ssspReached") == 100_000  # BA graphs are connected
    await wait_frames(page, 2, timeout=120_000)  # and frames keep coming while the layout moves
    assert await page.evaluate("window.graphwire.lastSeq") > seq
    assert await page.get_by_test_id("status").text_content() == "connected"
    decode = await page.evaluate("window.graphwire.decodeMs")
    apply = await page.evaluate("window.graphwire.applyMs")
    assert 0 < decode < 1000 and 0 <= apply < 100, (decode, apply)
