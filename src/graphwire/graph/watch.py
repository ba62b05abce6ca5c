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
import contextlib
import logging
from collections.abc import AsyncIterator

import watchfiles

from .live import LiveSource, SourceUpdate

log = logging.getLogger("graphwire.watch")

async def watch_source(live: LiveSource, *, quiet_ms: int, max_wait_ms: int,
                       stop: asyncio.Event | None = None,
                       ready: asyncio.Event | None = None,
                       lock: asyncio.Lock | None = None) -> AsyncIterator[SourceUpdate]:
    """Yield one :class:`SourceUpdate` per burst of changes that changed the graph or failed
    to read, until ``stop`` is set (``quiet_ms``, ``max_wait_ms``: the settings
    ``system.source.watchQuietMs`` and ``watchMaxWaitMs``). ``ready`` is set once the watch is
    in place. ``lock``, when given, is held while the source is read and while the caller
    handles the update (so a reload of the same source waits for both)."""
    if not live.watchable:
        return
    loop = asyncio.get_running_loop()
    watcher = watchfiles.awatch(
        live.watch_root, watch_filter=lambda _change, path: live.concerns(path),
        step=quiet_ms, debounce=max(max_wait_ms, quiet_ms), stop_event=stop,
        recursive=live.is_vault, rust_timeout=200, yield_on_timeout=True,
        ignore_permission_denied=True)
    async for changes in watcher:
        if ready is not None and not ready.is_set():
            ready.set()  # the first timeout (no change yet): the watch is running
        if not changes:
            continue
        paths = sorted({path for _, path in changes})
        async with lock if lock is not None else contextlib.nullcontext():
            update = await loop.run_in_executor(None, live.update, paths)
            log.debug("%d file events: %d read, %s, %d errors", len(changes),
                      update.files_read, update.diff.summary(), len(update.errors))
            if update.diff or update.errors:
                yield update
