"""``settle_tasks``: a task that outlives the grace still has its ending collected."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from graphwire.cluster.link import settle_tasks


async def test_a_task_that_fails_after_the_grace_is_not_reported_as_never_retrieved() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()  # a step that cannot stop at once (work in a thread)
            raise LookupError("lease gone") from None

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    task.cancel()
    pending = await settle_tasks([task], 0.01)
    assert pending == {task}
    release.set()
    await asyncio.wait(pending)  # ended with LookupError; nobody here asks for it
    del task, pending
    gc.collect()
    await asyncio.sleep(0)
    assert not [c for c in reported if "never retrieved" in str(c.get("message"))], reported
