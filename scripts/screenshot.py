"""Take docs/overview.png and docs/screenshot.png: the demo graph in the browser client.

Starts ``graphwire serve`` (the bundled demo) on a free port with a fresh settings database,
lets the layout run, opens the page in headless Chromium and takes the first view (the whole
graph, coloured by community: what a person sees on opening the page); then selects a
well-connected page so the shortest-path colouring shows, hovers a far node so its path back is
highlighted, and takes the second. Run it with ``make screenshot`` (or
``python scripts/screenshot.py [OUT] [--overview PNG] [--settle S]``).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from graphwire.bench.chromium import launch
from graphwire.bench.fanout import wait_ready
from graphwire.bench.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
SELECT = "json"  # a page of the demo: the json package


async def shoot(url: str, out: Path, overview: Path, settle: float) -> None:
    """Open the client, wait for the layout, take the overview; select, hover, take ``out``."""
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 860},
                                          device_scale_factor=1)
            await page.goto(url)
            await page.wait_for_function("window.graphwire && window.graphwire.framesApplied > 2",
                                         timeout=60_000)
            await page.wait_for_timeout(settle * 1000)  # let the layout unfold (a picture)
            await page.screenshot(path=str(overview))
            await page.get_by_test_id("search").fill(SELECT)
            await page.get_by_test_id("search").press("Enter")
            await page.wait_for_function("window.graphwire.ssspReached > 0", timeout=30_000)
            await page.wait_for_timeout(1200)  # the camera's flight to the node
            await page.mouse.move(600, 430)
            for _ in range(8):  # step back so the paths around it are in the picture
                await page.mouse.wheel(0, 120)
                await page.wait_for_timeout(150)
            await page.wait_for_timeout(600)
            # hover a node a few hops away so its path back to the source is drawn
            target = await page.evaluate("window.graphwire.farNeighbourOnScreen()")
            if target:
                await page.mouse.move(target["x"], target["y"])
                await page.wait_for_function("window.graphwire.hovered !== null", timeout=5_000)
            await page.wait_for_timeout(400)
            await page.screenshot(path=str(out))
        finally:
            await browser.close()


def main() -> int:
    """Serve the demo, take the screenshot, stop the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(ROOT / "docs" / "screenshot.png"))
    parser.add_argument("--overview", default=str(ROOT / "docs" / "overview.png"),
                        help="where the first view goes (default docs/overview.png)")
    parser.add_argument("--settle", type=float, default=25.0,
                        help="seconds of layout before the picture (default 25)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "graphwire.cli", "serve", "--port", str(port),
             "--db", str(Path(tmp) / "shot.db")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_ready(proc, "graphwire serve")
            # a picture is worth the slow path on a software rasteriser: quads and multisampling
            url = f"http://127.0.0.1:{port}/?nodes=instanced&aa=1"
            asyncio.run(shoot(url, Path(args.out), Path(args.overview), args.settle))
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"wrote {args.overview} and {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
