"""Browser tests: a real graphwire server on a free port and Debian's Chromium, headless."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from graphwire.bench.chromium import chromium_path, launch
from graphwire.server.app import GraphwireServer
from graphwire.server.config import WEB_DIR, ServerConfig
from tests.server.conftest import Stacks, ring_csv

needs_browser = pytest.mark.skipif(
    chromium_path() is None or not (WEB_DIR / "node_modules" / "three").is_dir(),
    reason="needs Chromium and the client's npm packages (make setup)")


class Served:
    """A running server and an HTTP session to it."""

    def __init__(self, server: GraphwireServer, core: GraphwireServer) -> None:
        self.server = server
        self.core = core  # the server that runs the simulation (behind a gateway, or itself)
        self.base = f"http://127.0.0.1:{server.port}"
        self.http = aiohttp.ClientSession()

    async def get(self, path: str) -> Any:
        async with self.http.get(self.base + path) as resp:
            assert resp.status == 200, (path, resp.status)
            return await resp.json()

    async def post(self, path: str, body: Any) -> Any:
        async with self.http.post(self.base + path, json=body) as resp:
            assert resp.status == 200, (path, resp.status, await resp.text())
            return await resp.json()


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """Start servers that serve the browser client (port 0: a free port)."""
    running: list[Served] = []
    stacks = Stacks(tmp_path)

    async def start(**options: Any) -> Served:
        source = options.pop("source", None) or str(ring_csv(tmp_path / "ring.csv"))
        config = ServerConfig(source=source, port=0, db=str(tmp_path / f"s{len(running)}.db"),
                              **options)
        served = Served(*await stacks.start(config))
        running.append(served)
        return served

    yield start
    for s in running:
        await s.http.close()
    await stacks.stop()


class Pages:
    """Pages of one browser, each recording console errors and uncaught exceptions."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.errors: list[str] = []
        self.allowed: list[str] = []  # substrings of errors a test expects (a server it killed)

    async def open(self, url: str) -> Page:
        page = await self.browser.new_page(viewport={"width": 1000, "height": 700})

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error" and not any(a in msg.text for a in self.allowed):
                self.errors.append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        await page.goto(url)
        return page


@pytest.fixture
async def pages() -> AsyncIterator[Pages]:
    """A headless Chromium; the test fails if any page logged an error."""
    async with async_playwright() as pw:
        browser = await launch(pw)
        opened = Pages(browser)
        yield opened
        await browser.close()
    assert opened.errors == [], opened.errors


async def wait_frames(page: Page, count: int = 3, timeout: float = 30_000) -> None:
    """Wait until the page has applied ``count`` more position frames."""
    start = await page.evaluate("window.graphwire ? window.graphwire.framesApplied : 0")
    await page.wait_for_function(
        f"window.graphwire && window.graphwire.framesApplied >= {start + count}", timeout=timeout)


async def wait_drawn(page: Page, timeout: float = 15_000) -> None:
    """Wait until the page has applied a frame at all (on a settled layout one keyframe may be
    all that comes for a while: waiting for one more than already applied would race it)."""
    await page.wait_for_function("window.graphwire && window.graphwire.framesApplied > 0",
                                 timeout=timeout)
