"""The browser client in headless Chromium against a real server (issue 8, docs/web-client.md).

Each test opens the page served by graphwire and drives it through its documented hooks
(``data-testid`` elements and ``window.graphwire``); the ``pages`` fixture fails a test on any
console error or uncaught exception.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from graphwire.bench.redis_server import free_port
from graphwire.graph.layout_file import Layout, write_layout
from graphwire.server.keys import GRAPH_SERVICE
from tests.server.conftest import THROUGH_GATEWAY, ring_csv

from .conftest import Pages, needs_browser, wait_drawn, wait_frames

pytestmark = [needs_browser, pytest.mark.browser, pytest.mark.timeout(120)]

STILL = {"visualisation.graphs.logseq.physics.enabled": False}


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows (RGB or RGBA bytes) of an 8-bit non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [r[i:i + 3] for r in rows for i in range(0, len(r), channels)]  # type: ignore[misc]


async def test_page_connects_applies_frames_and_draws_the_graph(serve, pages: Pages) -> None:
    served = await serve()
    page = await pages.open(served.base + "/")
    await page.wait_for_function(
        "document.querySelector('[data-testid=status]').textContent === 'connected'")
    await page.wait_for_function("window.graphwire.nodeCount > 0")
    # the status bar shows the graph's epoch as soon as the graph is in, not at its next redraw
    epoch_shown = await page.evaluate("document.querySelector('#epoch').textContent")
    await wait_frames(page, 3)
    state = await served.get("/api/graph/state")
    assert epoch_shown == str(state["epoch"])
    assert await page.evaluate("window.graphwire.nodeCount") == state["nodesCount"] == 200
    assert await page.evaluate("window.graphwire.edgeCount") == state["edgesCount"]
    frames = int(await page.get_by_test_id("frames").text_content() or 0)
    assert frames >= 3
    assert await page.evaluate("window.graphwire.lastSeq") > 0
    assert await page.evaluate("window.graphwire.epoch") == state["epoch"]
    assert await page.evaluate("window.graphwire.decodeMs") > 0
    # the canvas is not blank: many pixels of a screenshot differ from the background
    shot = await page.screenshot(clip={"x": 350, "y": 200, "width": 300, "height": 300})
    _, _, pixels = png_pixels(shot)
    background = (0x0B, 0x0E, 0x14)
    lit = sum(1 for p in pixels if sum(abs(p[k] - background[k]) for k in range(3)) > 40)
    assert lit > 500, f"only {lit} pixels differ from the background"


async def test_a_wide_layout_fills_the_view_and_every_node_stays_visible(
        serve, pages: Pages, tmp_path: Path) -> None:
    # a ring 40,000 units across: a node's world radius (about 2) is a tenth of a pixel at the
    # distance that shows it whole, so only the pixel floor keeps the nodes on screen; the
    # settings panel must not hide any (its schema may come before the first frame or after)
    n = 200
    angle = [2 * math.pi * i / n for i in range(n)]
    layout = Layout([f"n{i:03d}" for i in range(n)],
                    [[20_000 * math.cos(a), 20_000 * math.sin(a), 0.0] for a in angle],
                    settled=True)
    write_layout(tmp_path / "ring.layout.json", layout)
    served = await serve(layout=str(tmp_path / "ring.layout.json"), overrides={
        **STILL, "visualisation.rendering.edges.opacity": 0.0,
        "visualisation.rendering.nodes.labels": False})
    page = await pages.open(served.base + "/?nodes=instanced")
    await wait_drawn(page)
    await page.wait_for_timeout(300)  # a drawn frame after the fit
    where = await page.evaluate(
        "window.graphwire.keys().map((k) => window.graphwire.screenOf(k))")
    xs = [p["x"] for p in where]
    ys = [p["y"] for p in where]
    status_top = await page.evaluate(
        "document.querySelector('#status').getBoundingClientRect().top")
    # all in view, none under the status bar, and the ring fills the view (not a dot in it)
    assert min(xs) > 0 and max(xs) < 1000 and min(ys) > 0 and max(ys) < status_top
    assert max(xs) - min(xs) > 600 or max(ys) - min(ys) > 0.6 * status_top
    width, _, pixels = png_pixels(await page.screenshot())
    background = (0x0B, 0x0E, 0x14)

    def lit(x: float, y: float) -> bool:
        return any(sum(abs(c - b) for c, b in zip(pixels[(int(y) + dy) * width + int(x) + dx],
                                                   background, strict=True)) > 60
                   for dx in (-1, 0, 1) for dy in (-1, 0, 1))

    panels = await page.evaluate("""['#top', '#side', '#status'].map((id) => {
        const r = document.querySelector(id).getBoundingClientRect();
        return [r.left - 2, r.top - 2, r.right + 2, r.bottom + 2]; })""")
    clear = [(x, y) for x, y in zip(xs, ys, strict=True)
             if not any(a <= x <= c and b <= y <= d for a, b, c, d in panels)]
    assert len(clear) == n  # the camera stepped back from the corner panels
    shown = sum(lit(x, y) for x, y in clear)
    assert shown >= 0.95 * len(clear), f"only {shown} of {len(clear)} nodes show a pixel"


@pytest.mark.parametrize("viewport", [(390, 844), (1280, 720)], ids=["phone", "laptop"])
async def test_the_panels_never_cover_each_other(
        serve, pages: Pages, viewport: tuple[int, int]) -> None:
    served = await serve(overrides=STILL)
    page = await pages.open(served.base + "/")
    await page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    await wait_drawn(page)
    await page.get_by_test_id("settings").locator("details").first.wait_for()
    for selected in (False, True):
        if selected:
            await page.evaluate("window.graphwire.select('n042')")
            await page.get_by_test_id("selection").wait_for(state="visible")
        boxes = await page.evaluate("""['#top', '#side', '#status'].map((id) => {
            const r = document.querySelector(id).getBoundingClientRect();
            return [id, r.left, r.top, r.right, r.bottom]; })""")
        for box in boxes:  # each within the window
            assert box[1] >= 0 and box[2] >= 0, box
            assert box[3] <= viewport[0] and box[4] <= viewport[1], box
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                apart = a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2]
                assert apart, (a, b)
    # the panel of a node chosen from a scrolled panel is read from its name down
    side = "document.querySelector('#side')"
    await page.evaluate(f"{side}.scrollTop = 10000")
    scrolls = await page.evaluate(f"{side}.scrollTop") > 0
    assert scrolls or viewport[0] > 600  # a phone's panel (38 % of its height) does
    if scrolls:
        await page.get_by_test_id("neighbour").last.click()
        await page.wait_for_function("window.graphwire.selected !== 'n042'")
        assert await page.evaluate(f"{side}.scrollTop") == 0


async def camera_still(page: Page) -> None:
    """Wait until the view has stopped moving: a node's screen position the same 0.1 s apart
    (from now on: a position seen by an earlier call says nothing of a flight begun since)."""
    await page.evaluate("window.__still = null")
    await page.wait_for_function("""() => {
        const p = window.graphwire.screenOf(window.graphwire.keys()[0]);
        const before = window.__still;
        window.__still = p;
        return before && Math.abs(before.x - p.x) < 0.01 && Math.abs(before.y - p.y) < 0.01;
    }""", polling=100, timeout=10_000)


async def test_search_flies_in_to_a_hub_not_out(serve, pages: Pages, tmp_path: Path) -> None:
    # A hub with 300 leaves round it (Logseq's docs: a Changelog page that names 351 people and
    # days): the flight's distance grew with the hub's size and took the camera further out
    # than the whole graph; it must come closer, and its neighbours spread wider on screen.
    n = 300
    keys = [f"leaf{i:03d}" for i in range(n)]
    star = tmp_path / "star.csv"
    star.write_text("source,target\n" + "".join(f"hub,{k}\n" for k in keys))
    golden = math.pi * (3 - math.sqrt(5))  # leaves spread evenly over a sphere of radius 40
    points = [[40 * math.sqrt(1 - z * z) * math.cos(golden * i),
               40 * math.sqrt(1 - z * z) * math.sin(golden * i), 40 * z]
              for i in range(n) for z in [1 - 2 * (i + 0.5) / n]]
    write_layout(tmp_path / "star.layout.json",
                 Layout(["hub", *keys], [[0.0, 0.0, 0.0], *points], settled=True))
    served = await serve(source=str(star), layout=str(tmp_path / "star.layout.json"),
                         overrides=STILL)
    page = await pages.open(served.base + "/")
    await wait_drawn(page)
    await camera_still(page)
    spread = f"""() => {{ const xs = {keys!r}.map((k) => window.graphwire.screenOf(k).x);
        return Math.max(...xs) - Math.min(...xs); }}"""
    whole = await page.evaluate(spread)
    await page.get_by_test_id("search").fill("hub")
    await page.get_by_test_id("search").press("Enter")
    await page.wait_for_function("window.graphwire.selected === 'hub'")
    await page.wait_for_timeout(800)  # the flight (700 ms)
    await camera_still(page)
    assert await page.evaluate(spread) > 1.2 * whole


async def test_search_turns_the_camera_so_nothing_hides_the_node(serve, pages: Pages) -> None:
    served = await serve(overrides=STILL)
    page = await pages.open(served.base + "/")
    await wait_drawn(page)
    await camera_still(page)
    # a node put between the camera and n050, on the line the camera would fly along
    cam = await page.evaluate("window.graphwire.camera()")
    at = await page.evaluate("window.graphwire.positionOf('n050')")
    way = [p - t for p, t in zip(cam["position"], cam["target"], strict=True)]
    norm = math.hypot(*way)
    block = [a + 20 * w / norm for a, w in zip(at, way, strict=True)]
    await served.post("/api/graph/nodes", {"nodes": [
        {"key": "blocker", "label": "Blocker", "x": block[0], "y": block[1], "z": block[2]}]})
    await page.wait_for_function(f"""() => {{ const p = window.graphwire.positionOf('blocker');
        const b = {block!r};
        return p && Math.hypot(p[0] - b[0], p[1] - b[1], p[2] - b[2]) < 0.01; }}""")
    await page.get_by_test_id("search").fill("n050")
    await page.get_by_test_id("search").press("Enter")
    await page.wait_for_function("window.graphwire.selected === 'n050'")
    await camera_still(page)
    # (still where it was put: no frame has moved it, and a frame re-shown for the new slot
    # layout must not have put it at the origin)
    assert math.dist(await page.evaluate("window.graphwire.positionOf('blocker')"), block) < 0.01
    # the node asked for is what the eye sees at its place on screen, not the one in front
    where = await page.evaluate("window.graphwire.screenOf('n050')")
    await page.mouse.move(where["x"], where["y"])
    await page.wait_for_function("window.graphwire.hovered !== null", timeout=5_000)
    assert await page.evaluate("window.graphwire.hovered") == "n050"
    # and the camera turned only a little to see it
    cam = await page.evaluate("window.graphwire.camera()")
    now = [p - t for p, t in zip(cam["position"], cam["target"], strict=True)]
    turned = math.degrees(math.acos(sum(a * b for a, b in zip(way, now, strict=True))
                                    / norm / math.hypot(*now)))
    assert 5 < turned <= 30, turned


async def test_whole_graph_brings_the_view_back_from_a_close_look(serve, pages: Pages) -> None:
    served = await serve(overrides=STILL)
    page = await pages.open(served.base + "/")
    await wait_drawn(page)
    assert await page.get_by_test_id("loading").is_hidden()
    on_screen = """() => window.graphwire.keys().filter((k) => {
        const p = window.graphwire.screenOf(k);
        return p.x >= 0 && p.x <= innerWidth && p.y >= 0 && p.y <= innerHeight; }).length"""
    # the whole ring in view and filling it (not a dot in it): wide on screen
    whole = f"""({on_screen})() === 200 && (() => {{
        const xs = window.graphwire.keys().map((k) => window.graphwire.screenOf(k).x);
        return Math.max(...xs) - Math.min(...xs) > 300; }})()"""
    assert await page.evaluate(whole)
    # the overview names its landmarks: many labels, none over another
    boxes_js = """() => [...document.querySelectorAll('.label')].filter((el) => !el.hidden)
        .map((el) => el.getBoundingClientRect()).map((r) => [r.left, r.top, r.right, r.bottom])"""
    await page.wait_for_function(f"({boxes_js})().length >= 15", timeout=5_000)
    boxes = await page.evaluate(boxes_js)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    # search flies close to a node: most of the ring leaves the screen
    await page.get_by_test_id("search").fill("n042")
    await page.get_by_test_id("search").press("Enter")
    await page.wait_for_function(f"({on_screen})() < 100", timeout=10_000)
    # the whole graph with the selection's tall panel open: framed beside it, none under it
    await page.keyboard.press("f")
    await page.wait_for_function(f"({on_screen})() === 200", timeout=10_000)
    await camera_still(page)
    under_side = await page.evaluate("""() => {
        const r = document.querySelector('#side').getBoundingClientRect();
        return window.graphwire.keys().filter((k) => { const p = window.graphwire.screenOf(k);
            return p.x >= r.left && p.x <= r.right && p.y >= r.top && p.y <= r.bottom; }); }""")
    assert under_side == []
    await page.locator("#sel-clear").click()
    assert await page.get_by_test_id("search").input_value() == ""  # clear empties the box
    await page.keyboard.press("f")
    await page.wait_for_function(whole, timeout=10_000)
    # the wheel zooms towards what the pointer is on: a node off centre stays under it
    await camera_still(page)
    key = await page.evaluate("""() => { const g = window.graphwire; let best = null;
        for (const k of g.keys()) { const p = g.screenOf(k);
            const d = Math.hypot(p.x - innerWidth / 2, p.y - innerHeight / 2);
            if (p.x > 360 && p.x < innerWidth - 360 && (!best || d > best[1])) best = [k, d]; }
        return best[0]; }""")
    at = await page.evaluate(f"window.graphwire.screenOf({key!r})")
    await page.mouse.move(at["x"], at["y"])
    for _ in range(3):
        await page.mouse.wheel(0, -300)
    await camera_still(page)  # damping eases the zoom over a few hundred ms
    now = await page.evaluate(f"window.graphwire.screenOf({key!r})")
    assert math.dist((now["x"], now["y"]), (at["x"], at["y"])) < 40, (at, now)
    # and the button does the same after a zoom far out
    await page.mouse.move(500, 400)  # over the graph, not a panel
    for _ in range(30):
        await page.mouse.wheel(0, 2000)
    await page.wait_for_function(f"!({whole})", timeout=10_000)
    await page.get_by_test_id("fit-view").click()
    await page.wait_for_function(whole, timeout=10_000)


async def test_a_page_opened_on_a_settled_layout_shows_it_at_once(serve, pages: Pages) -> None:
    # settled from the start, and no keyframe for a minute after the one a subscriber gets: the
    # page must show (and count, and fit the camera to) that first keyframe, which arrives
    # before the graph body it belongs to
    served = await serve(overrides={**STILL, "system.websocket.settledKeyframeIntervalMs": 60_000})
    assert (await served.get("/api/graph/state"))["settled"]
    page = await pages.open(served.base + "/")
    await wait_drawn(page)
    assert await page.evaluate("window.graphwire.settled") is True
    # the status bar is redrawn twice a second
    await page.wait_for_function("document.querySelector('#settled').textContent === 'settled'",
                                 timeout=3_000)
    state = await served.get("/api/graph/state")
    assert await page.evaluate("window.graphwire.lastSeq") == state["seq"]


async def test_an_unknown_format_in_the_address_falls_back_to_q(serve, pages: Pages) -> None:
    served = await serve(overrides=STILL)
    page = await pages.open(served.base + "/?format=bogus")
    await wait_drawn(page)
    assert await page.evaluate("window.graphwire.format") == "q"


async def test_a_server_that_needs_a_token_says_so_and_takes_it(serve, pages: Pages) -> None:
    served = await serve(token="sekrit", overrides=STILL)
    pages.allowed += ["401", "Authentication failed"]  # the refusals the page must explain
    page = await pages.open(served.base + "/")
    notice = page.get_by_test_id("notice")
    await notice.wait_for(state="visible", timeout=10_000)
    assert "needs a token" in await notice.inner_text()
    assert await page.evaluate("window.graphwire.status") == "disconnected"
    await page.get_by_test_id("token-input").fill("wrong")
    await page.get_by_test_id("token-input").press("Enter")
    await page.wait_for_url("**/?token=wrong")
    await notice.wait_for(state="visible", timeout=10_000)
    assert "refused" in await notice.inner_text()
    await page.get_by_test_id("token-input").fill("sekrit")
    await page.get_by_test_id("token-input").press("Enter")
    await page.wait_for_url("**/?token=sekrit")
    await wait_drawn(page)
    assert await notice.is_hidden()
    assert await page.evaluate("window.graphwire.status") == "connected"


async def test_a_slider_moved_in_one_page_moves_it_in_another(serve, pages: Pages) -> None:
    served = await serve()
    path = "visualisation.graphs.logseq.physics.spring_k"
    start = (await served.get(f"/api/settings/{path}"))["value"]
    schema = {r["path"]: r for r in (await served.get("/api/settings?schema=1"))["schema"]}
    lo, hi = schema[path]["min"], schema[path]["max"]
    a = await pages.open(served.base + "/")
    b = await pages.open(served.base + "/")
    for page in (a, b):
        await wait_drawn(page)
        await page.wait_for_function(f"window.graphwire.setting({path!r}) === {start!r}")
    slider = a.get_by_test_id(f"setting-{path}")
    box = a.get_by_test_id(f"number-{path}")
    other_slider = b.get_by_test_id(f"setting-{path}")
    other_box = b.get_by_test_id(f"number-{path}")
    assert await slider.get_attribute("type") == "range"
    # spring_k spans 0 … 100 around a default of 1: a logarithmic slider from two decades
    # under the default to two over it (or the maximum); the box beside it takes any value of
    # the schema's range
    assert await slider.get_attribute("data-scale") == "log"
    assert float(await box.get_attribute("min") or "nan") == lo
    assert float(await box.get_attribute("max") or "nan") == hi
    floor = schema[path]["default"] / 100
    top = min(hi, schema[path]["default"] * 100)

    def position(v: float) -> int:
        return round(1000 * math.log(v / floor) / math.log(top / floor))

    assert await slider.input_value() == str(position(start))
    # the slider three quarters along: three of the four decades from floor to top (10),
    # written and shown everywhere
    assert start != 10
    await slider.evaluate(
        "el => { el.value = '750'; el.dispatchEvent(new Event('input', {bubbles: true}));"
        " el.dispatchEvent(new Event('change', {bubbles: true})); }")
    assert await box.input_value() == "10"
    await b.wait_for_function(
        f"document.querySelector('[data-testid=\"number-{path}\"]').value === '10'")
    assert await other_slider.input_value() == "750"
    assert await other_box.input_value() == "10"
    assert (await served.get(f"/api/settings/{path}"))["value"] == 10
    # an exact value typed in the box, once the group is open (closed on a first visit)
    assert not await box.is_visible()
    await a.locator("summary", has_text="Knowledge graph physics").click()
    assert await box.is_visible()
    # named for what it does, its setting's name and help written under it; the technical
    # knobs wait under "more"
    assert await a.locator(f"label[for='setting-{path}']").inner_text() == "pull along links"
    assert "spring k: " in await a.locator(".setting", has=slider).locator(".help").inner_text()
    theta = a.get_by_test_id("number-visualisation.graphs.logseq.physics.theta")
    assert not await theta.is_visible()
    await a.locator("details.more > summary").first.click()
    assert await theta.is_visible()
    await box.fill("0.125")
    await box.press("Enter")
    await b.wait_for_function(
        f"document.querySelector('[data-testid=\"number-{path}\"]').value === '0.125'")
    assert await other_slider.input_value() == str(position(0.125))
    assert (await served.get(f"/api/settings/{path}"))["value"] == 0.125
    # a value outside the range is refused in the page and never written
    await box.fill(str(hi * 10))
    await box.press("Enter")
    await a.wait_for_function(
        f"document.querySelector('[data-testid=\"number-{path}\"]').value === '0.125'")
    assert (await served.get(f"/api/settings/{path}"))["value"] == 0.125
    assert await a.evaluate("window.graphwire.digestMismatches") == 0
    # a change made elsewhere (REST) moves both sliders and both boxes
    async with served.http.put(served.base + f"/api/settings/{path}", json={"value": 2.5}) as r:
        assert r.status == 200
    for page in (a, b):
        await page.wait_for_function(
            f"document.querySelector('[data-testid=\"number-{path}\"]').value === '2.5'")
        assert await page.get_by_test_id(f"setting-{path}").input_value() == str(position(2.5))
    # a value changed from its default is marked, in both pages, until reset
    row = f"document.querySelector('[data-testid=\"setting-{path}\"]').closest('.setting')"
    for page in (a, b):
        assert await page.evaluate(f"{row}.classList.contains('changed')")
    await a.get_by_test_id(f"reset-{path}").click()
    for page in (a, b):
        await page.wait_for_function(f"!{row}.classList.contains('changed')")
    assert (await served.get(f"/api/settings/{path}"))["value"] == schema[path]["default"]
    # the group opened stays open on the next visit
    await a.reload()
    await wait_drawn(a)
    assert await a.get_by_test_id(f"number-{path}").is_visible()


async def test_searching_a_page_name_selects_it_and_colours_paths(serve, pages: Pages) -> None:
    served = await serve()
    page = await pages.open(served.base + "/")
    await wait_frames(page, 2)
    assert await page.evaluate("window.graphwire.ssspReached") is None
    search = page.get_by_test_id("search")
    await search.fill("n04")
    await page.wait_for_selector("#search-results li")
    await search.fill("n042")
    await search.press("Enter")
    await page.wait_for_function("window.graphwire.selected === 'n042'")
    await search.focus()  # the name chosen is still in the box: it matches, nothing to say
    assert await page.get_by_test_id("no-match").count() == 0
    await search.press("Escape")
    await page.wait_for_function("window.graphwire.ssspReached > 0")
    assert await page.evaluate("window.graphwire.ssspReached") == 200  # the ring is connected
    nid = served.core[GRAPH_SERVICE].graph.keys.index("n042")
    assert served.core[GRAPH_SERVICE].sssp.source == nid
    assert await page.get_by_test_id("selection").is_visible()
    assert await page.locator("#sel-dim-note").is_hidden()  # every node has a page of its own
    # a name that matches nothing says so, and Enter keeps the selection
    await search.fill("no such page")
    assert await page.get_by_test_id("no-match").text_content() == "no node matches “no such page”"
    await search.press("Enter")
    assert await page.evaluate("window.graphwire.selected") == "n042"
    await search.fill("n04")
    await page.wait_for_selector("#search-results li >> text=n041")
    assert await page.get_by_test_id("no-match").count() == 0


async def test_paths_another_viewer_chose_come_with_their_panel_and_clear(
        serve, pages: Pages) -> None:
    served = await serve(overrides=STILL)
    first = await pages.open(served.base + "/")
    second = await pages.open(served.base + "/")
    for page in (first, second):
        await wait_drawn(page)
    await first.evaluate("window.graphwire.select('n042')")
    # the other screen's colours changed: it says from which node, and how to go back
    await second.wait_for_function("window.graphwire.selected === 'n042'", timeout=10_000)
    await second.get_by_test_id("selection").wait_for(state="visible")
    assert "n042" in await second.locator("#sel-label").inner_text()
    # a page opened now (its paths may arrive before its graph) says the same, counted right
    third = await pages.open(served.base + "/")
    await third.get_by_test_id("selection").wait_for(state="visible", timeout=10_000)
    await third.wait_for_function("window.graphwire.ssspReached === 200")
    assert await third.evaluate("window.graphwire.selected") == "n042"
    assert await third.locator("#sel-reached").inner_text() == "200 of 200"
    # clear on one screen clears everywhere
    await second.locator("#sel-clear").click()
    for page in (first, third):
        await page.wait_for_function("window.graphwire.ssspReached === null", timeout=10_000)
        await page.get_by_test_id("selection").wait_for(state="hidden")
        assert await page.evaluate("window.graphwire.selected") is None
    assert served.core[GRAPH_SERVICE].sssp.source is None
    # clicks in quick succession: every screen ends on the last, as the server does
    await first.evaluate("['n010', 'n020', 'n030'].forEach((k) => window.graphwire.select(k))")
    for page in (first, second, third):
        await page.wait_for_function("window.graphwire.selected === 'n030'"
                                     " && window.graphwire.ssspReached === 200", timeout=10_000)
    nid = served.core[GRAPH_SERVICE].graph.keys.index("n030")
    assert served.core[GRAPH_SERVICE].sssp.source == nid


async def test_a_vaults_tags_and_unwritten_pages_say_what_they_are(
        serve, pages: Pages, tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "Mars.md").write_text("---\naliases: [red planet, ares]\ntags: [astro]\n---\n"
                                   "[[Venus]] [[Andromeda]]\n")
    (vault / "Venus.md").write_text("type:: [[Planet|a planet]] near [[Mars#Moons]], not "
                                    "[[Nowhere Yet]]\n"
                                    "source:: [NASA](https://science.nasa.gov/venus/) and "
                                    "[bad](javascript:alert(1))\n"
                                    "#astro [[Mars]]\n")
    (vault / "Planet.md").write_text("a kind of body\n")
    # a hub linked from more pages than the panel lists at once
    for i in range(320):
        (vault / f"moon {i}.md").write_text("[[Hub]]\n")
    served = await serve(source=str(vault), overrides=STILL)
    page = await pages.open(served.base + "/")
    await wait_drawn(page)
    said = {}
    for key in ("Mars", "astro", "Andromeda"):
        assert await page.evaluate(f"window.graphwire.select({key!r})")
        await page.wait_for_function(f"window.graphwire.selected === {key!r}")
        said[key] = await page.locator("#sel-meta").inner_text()
        if key == "Mars":  # its tag is a link to the tag; its aliases are its own names
            assert await page.locator("#sel-meta button.link").all_inner_texts() == ["astro"]
    assert "red planet, ares" in said["Mars"] and "[" not in said["Mars"]  # a list, as written
    assert "a tag, on 2 pages" in said["astro"] and "placeholder" not in said["astro"]
    assert "not written yet: linked from 1 page" in said["Andromeda"]
    # a [[link]] in a property is a link to its node; a name the graph has not, plain text
    assert await page.evaluate("window.graphwire.select('Venus')")
    await page.wait_for_function("window.graphwire.selected === 'Venus'")
    assert await page.locator("#sel-dim-note").is_visible()  # the dimmed names are explained
    meta = page.locator("#sel-meta")
    assert "type\ta planet near Mars#Moons, not Nowhere Yet" in await meta.inner_text()
    assert await meta.locator("button.link").all_inner_texts() == [
        "a planet", "Mars#Moons", "Nowhere Yet"]
    assert await meta.locator("button.unwritten").all_inner_texts() == ["Nowhere Yet"]
    # a Markdown link to a web page opens it; any other address stays text
    assert "source\tNASA and [bad](javascript:alert(1))" in await meta.inner_text()
    assert await meta.locator("a").evaluate_all(
        "(as) => as.map((a) => [a.textContent, a.href, a.target])") == [
        ["NASA", "https://science.nasa.gov/venus/", "_blank"]]
    await meta.get_by_role("button", name="a planet").click()
    await page.wait_for_function("window.graphwire.selected === 'Planet'")
    # a hub's neighbours come a page at a time, every one of them in the end
    assert await page.evaluate("window.graphwire.select('Hub')")
    await page.wait_for_function("window.graphwire.selected === 'Hub'")
    neighbours = page.get_by_test_id("neighbour")
    more = page.get_by_test_id("more-neighbours")
    assert await neighbours.count() == 300
    assert await more.inner_text() == "show 20 more (20 not shown)"
    await more.click()
    await page.wait_for_function(
        "document.querySelectorAll('[data-testid=neighbour]').length === 320")
    assert await more.is_hidden()
    assert "moon 319" in await neighbours.all_inner_texts()


async def pinned_on_server(graph: Any, nid: int, pinned: bool) -> None:
    """Wait until the simulation holds the pin as the page left it: the ack is the server's
    (through a gateway, the gateway's, and the simulation applies the batch a moment later)."""
    deadline = asyncio.get_running_loop().time() + 5
    while bool(graph.pinned[nid]) != pinned:
        assert asyncio.get_running_loop().time() < deadline, f"pinned is not {pinned}"
        await asyncio.sleep(0.01)


async def test_a_drag_pins_the_node_on_the_server_where_the_page_put_it(
        serve, pages: Pages) -> None:
    served = await serve(overrides=STILL)
    page = await pages.open(served.base + "/")
    await wait_drawn(page)
    key = "n100"
    nid = served.core[GRAPH_SERVICE].graph.keys.index(key)
    start = await page.evaluate(f"window.graphwire.screenOf({key!r})")
    await page.mouse.move(start["x"], start["y"])
    await page.mouse.down()
    for k in range(1, 11):
        await page.mouse.move(start["x"] + 6 * k, start["y"] - 3 * k)
    await page.mouse.up()
    await page.wait_for_function(f"window.graphwire.pinned.includes({key!r})")
    await page.wait_for_function(
        "window.graphwire.queue.accepted >= 1 && window.graphwire.queue.inflight === 0")
    put = await page.evaluate(f"window.graphwire.pinnedAt({key!r})")
    graph = served.core[GRAPH_SERVICE].graph
    await pinned_on_server(graph, nid, True)
    assert [round(float(c), 3) for c in graph.pos[nid]] == [round(c, 3) for c in put]
    shown = await page.evaluate(f"window.graphwire.screenOf({key!r})")
    assert abs(shown["x"] - (start["x"] + 60)) < 2 and abs(shown["y"] - (start["y"] - 30)) < 2
    # double-click lets it go
    await page.mouse.dblclick(shown["x"], shown["y"])
    await page.wait_for_function(f"!window.graphwire.pinned.includes({key!r})")
    await page.wait_for_function(
        "window.graphwire.queue.accepted >= 2 && window.graphwire.queue.inflight === 0")
    await pinned_on_server(graph, nid, False)
    # a pin this page did not make (before a reload) is let go by a double-click too
    await page.mouse.move(shown["x"], shown["y"])
    await page.mouse.down()
    for k in range(1, 6):
        await page.mouse.move(shown["x"] - 6 * k, shown["y"])
    await page.mouse.up()
    await page.wait_for_function(
        "window.graphwire.queue.accepted >= 3 && window.graphwire.queue.inflight === 0")
    await pinned_on_server(graph, nid, True)
    await page.reload()
    await wait_drawn(page)
    assert await page.evaluate("window.graphwire.pinned") == []
    # (the first frame after a reload eases the nodes in from where the page had them: the
    # double-click goes where the node has come to rest, once the pointer is over it)
    await camera_still(page)
    again = await page.evaluate(f"window.graphwire.screenOf({key!r})")
    await page.mouse.move(again["x"], again["y"])
    await page.wait_for_function(f"window.graphwire.hovered === {key!r}")
    await page.mouse.dblclick(again["x"], again["y"])
    await page.wait_for_function(
        "window.graphwire.queue.accepted >= 1 && window.graphwire.queue.inflight === 0")
    await pinned_on_server(graph, nid, False)


async def test_a_node_added_through_rest_appears_without_a_reload(serve, pages: Pages) -> None:
    served = await serve()
    page = await pages.open(served.base + "/")
    await wait_frames(page, 2)
    await page.evaluate("window.notReloaded = true")
    # every node is a page: colour by type would say nothing, and says so
    by_type = page.locator("#color-mode option[value=type]")
    assert await by_type.is_disabled() and "all knowledge" in await by_type.inner_text()
    agents = page.locator("summary", has_text="Agent graph physics")
    assert "no agent nodes yet" in await agents.inner_text()
    await served.post("/api/graph/nodes", {
        "nodes": [{"key": "brand-new", "label": "Brand new", "x": 1, "y": 2, "z": 3},
                  {"key": "an-agent", "type": "agent"}],
        "edges": [{"source": "brand-new", "target": "n000"}]})
    await page.wait_for_function("window.graphwire.nodeCount === 202")
    assert await by_type.is_enabled()  # an agent among the pages: now it has something to show
    assert await agents.inner_text() == "Agent graph physics"
    await page.wait_for_function("window.graphwire.keys().includes('brand-new')")
    assert await page.evaluate("window.graphwire.edgeCount") == (await served.get(
        "/api/graph/state"))["edgesCount"]
    await wait_frames(page, 2)
    assert await page.evaluate("window.graphwire.positionOf('brand-new')") is not None
    assert await page.evaluate("window.notReloaded") is True
    await page.get_by_test_id("search").fill("Brand new")
    await page.get_by_test_id("search").press("Enter")
    await page.wait_for_function("window.graphwire.selected === 'brand-new'")


def _start(source: Path, port: int, db: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphwire.cli", "serve", str(source), "--port", str(port),
         "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert f"127.0.0.1:{port}" in line, line + (proc.stderr.read() if proc.stderr else "")
    return proc


@pytest.mark.skipif(THROUGH_GATEWAY, reason="kills one process and expects a new epoch; "
                    "tests/cluster kills gateways and the lease holder")
async def test_the_page_reconnects_after_the_server_is_killed_and_restarted(
        tmp_path: Path, pages: Pages) -> None:
    source, db, port = ring_csv(tmp_path / "ring.csv"), tmp_path / "s.db", free_port()
    loop = asyncio.get_running_loop()
    proc = await loop.run_in_executor(None, _start, source, port, db)
    try:
        page = await pages.open(f"http://127.0.0.1:{port}/")
        await page.wait_for_function(
            "document.querySelector('[data-testid=status]').textContent === 'connected'")
        await wait_frames(page, 2)
        epoch = await page.evaluate("window.graphwire.epoch")
        # while the server is down the browser itself logs the refused connections
        pages.allowed += ["ERR_CONNECTION_REFUSED", f"WebSocket connection to 'ws://127.0.0.1:{port}"]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        await page.wait_for_function(
            "document.querySelector('[data-testid=status]').textContent === 'reconnecting'")
        frames = await page.evaluate("window.graphwire.framesApplied")
        notice = page.get_by_test_id("loading")
        await notice.wait_for(state="visible")  # said where a person looks, not only below
        assert "reconnecting" in await notice.inner_text()
        proc = await loop.run_in_executor(None, _start, source, port, db)
        await page.wait_for_function(
            "document.querySelector('[data-testid=status]').textContent === 'connected'",
            timeout=60_000)
        await page.wait_for_function(f"window.graphwire.framesApplied >= {frames + 2}")
        assert await notice.is_hidden()
        assert await page.evaluate("window.graphwire.epoch") == epoch + 1  # a new start
        assert await page.evaluate("window.graphwire.nodeCount") == 200
    finally:
        proc.kill()
        proc.wait()
