"""Headless Chromium for the browser bench, the screenshot script and the browser tests.

graphwire drives the machine's own Chromium (Debian's ``/usr/bin/chromium``, or
``$GRAPHWIRE_CHROMIUM``) through Playwright; it never downloads a browser. WebGL runs on
SwiftShader (software), which headless Chromium without a GPU needs.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # WebGL without a GPU: ANGLE on SwiftShader, allowed explicitly (Chromium otherwise warns
    # that the automatic software fallback is deprecated)
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
)
"""Launch flags that work headless, as root, without a GPU and without network services."""


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None when the machine has none."""
    explicit = os.environ.get("GRAPHWIRE_CHROMIUM")
    if explicit:
        return explicit
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


async def launch(pw: Playwright) -> Browser:
    """Start headless Chromium with :data:`FLAGS`."""
    path = chromium_path()
    if path is None:
        raise RuntimeError(
            "no Chromium found (install Debian's chromium or set GRAPHWIRE_CHROMIUM)")
    return await pw.chromium.launch(executable_path=path, args=list(FLAGS), headless=True)
