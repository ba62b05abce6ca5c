"""Watching a source's files (with ``watchfiles``) and turning bursts of saves into changes.

``watchfiles`` (Rust ``notify``: inotify, FSEvents, ReadDirectoryChangesW) collects file events
and yields them as a set once no new event came for ``quiet_ms`` (or ``max_wait_ms`` after the
first, during a long burst). Each set is read by :meth:`LiveSource.update
<graphwire.graph.live.LiveSource.update>` in a worker thread; events that arrive meanwhile are
collected by the watcher and make the next set. So a ``git checkout`` of 500 files is a few
updates, not 500, and a single save reaches the graph about ``quiet_ms`` after it is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import watchfiles

from .live import LiveSource, SourceUpdate

log = logging.getLogger("graphwire.watch")

QUIET_MS = 50
"""A burst ends when no file event came for this long (``system.source.watchQuietMs``)."""

MAX_WAIT_MS = 1000
"""A burst that goes on is read anyway this long after its first event."""


async def watch_source(live: LiveSource, *, quiet_ms: int = QUIET_MS,
                       max_wait_ms: int = MAX_WAIT_MS,
                       stop: asyncio.Event | None = None,
                       ready: asyncio.Event | None = None) -> AsyncIterator[SourceUpdate]:
    """Yield one :class:`SourceUpdate` per burst of changes that changed the graph or failed
    to read, until ``stop`` is set. ``ready`` is set once the watch is in place."""
    if not live.watchable:
        return
    loop = asyncio.get_running_loop()
    watcher = watchfiles.awatch(
        live.watch_root, watch_filter=lambda _change, path: live.concerns(path),
        step=quiet_ms, debounce=max(max_wait_ms, quiet_ms), stop_event=stop,
        recursive=live.is_vault, rust_timeout=500, yield_on_timeout=True,
        ignore_permission_denied=True)
    async for changes in watcher:
        if ready is not None and not ready.is_set():
            ready.set()  # the first timeout (no change yet): the watch is running
        if not changes:
            continue
        paths = sorted({path for _, path in changes})
        update = await loop.run_in_executor(None, live.update, paths)
        log.debug("%d file events: %d read, %s, %d errors", len(changes), update.files_read,
                  update.diff.summary(), len(update.errors))
        if update.diff or update.errors:
            yield update
