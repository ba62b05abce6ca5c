"""A blocking facade over :class:`~graphwire.client.connection.Client` for scripts and notebooks.

The asyncio client runs on its own event loop in a background (daemon) thread; every method
here hands work to that loop and waits for the answer. ``positions`` (a consistent copy of the
mirror) is readable at any time from any thread. Callbacks registered with :meth:`on` run in the
loop's thread: keep them short.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from .batch_queue import Mode
from .connection import Client
from .errors import ClientClosedError, ClientError, ClientTimeoutError, ConnectError
from .mirror import GraphMirror, MirrorSnapshot

T = TypeVar("T")

CONNECT_ATTEMPTS = 3
"""Attempts at the first connection before a BlockingClient gives up (about 3 s of backoff)."""

_CANCEL_GRACE = 15.0  # seconds a timed-out call may take to finish cancelling


async def _cancel_the_rest() -> None:
    """Cancel every other task of the loop and wait for them (nothing left pending when the
    loop stops)."""
    me = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks() if t is not me]
    for t in rest:
        t.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


class BlockingClient:
    """``with BlockingClient("http://127.0.0.1:8080") as c: print(c.positions)``.

    Takes the same keyword arguments as :class:`Client`; ``timeout`` bounds the connect. A
    script fails fast when no server answers: the first connection is tried
    ``connect_attempts`` times (default :data:`CONNECT_ATTEMPTS`; None: until ``timeout``),
    then :class:`~graphwire.client.errors.ConnectError` says why. Once connected, the client
    reconnects after any fault as :class:`Client` does.
    """

    def __init__(self, url: str, *, timeout: float | None = 60.0, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="graphwire-client", daemon=True)
        self._thread.start()
        self._closed = False
        options.setdefault("connect_attempts", CONNECT_ATTEMPTS)
        try:
            self.client: Client = self._call(self._make(url, options), timeout)
        except TimeoutError:
            self._shutdown()
            raise ConnectError(f"cannot connect to {url} within {timeout} s") from None
        except BaseException:
            self._shutdown()
            raise

    @staticmethod
    async def _make(url: str, options: dict[str, Any]) -> Client:
        client = Client(url, **options)
        try:
            return await client.start()
        except BaseException:
            await client.close()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None,
              what: str = "the call") -> T:
        """Run ``coro`` on the client's loop and wait for it. The timeout is applied on the
        loop, so a coroutine that runs out of time has finished cancelling (and cleaning up)
        when ClientTimeoutError (``what`` names the call in its message) reaches the caller;
        a closed client raises ClientClosedError."""
        if self._closed:
            coro.close()
            raise ClientClosedError("the client is closed")
        if timeout is not None:
            coro = asyncio.wait_for(coro, timeout)
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(None if timeout is None else timeout + _CANCEL_GRACE)
        except TimeoutError as exc:
            if isinstance(exc, ClientError) or timeout is None:
                raise
            raise ClientTimeoutError(f"{what} did not finish within {timeout:g} s") from None

    def _soon(self, fn: Callable[[], T], timeout: float | None = 10.0) -> T:
        async def run() -> T:
            return fn()
        return self._call(run(), timeout)

    # -- reading -----------------------------------------------------------------------------
    @property
    def mirror(self) -> GraphMirror:
        """The live mirror (its arrays change under you; :attr:`positions` is a safe copy)."""
        return self.client.mirror

    @property
    def snapshot(self) -> MirrorSnapshot:
        """Ids, positions and velocities of the live nodes at one seq (a consistent copy)."""
        return self.client.mirror.snapshot()

    @property
    def positions(self) -> npt.NDArray[np.float64]:
        """Positions indexed by node id (a copy; NaN where no node lives)."""
        with self.client.mirror.lock:
            return self.client.mirror.positions.copy()

    @property
    def seq(self) -> int:
        """The seq of the newest frame in the mirror."""
        return self.client.mirror.seq

    @property
    def connected(self) -> bool:
        """Whether the connection is established now."""
        return self.client.connected

    def setting(self, path: str, default: Any = None) -> Any:
        """A setting's current value."""
        return self.client.settings.get(path, default)

    # -- acting ------------------------------------------------------------------------------
    def set(self, path: str, value: Any, timeout: float | None = 30.0) -> int:
        """Write a setting, wait for the Response; returns the new revision.
        ClientTimeoutError after ``timeout`` seconds (while disconnected the write waits in
        the outgoing queue, and may still be applied when the connection returns)."""
        return int(self._call(self.client.settings.set(path, value), timeout,
                              f"setting {path}").revision)

    def batch_set(self, values: Mapping[str, Any], timeout: float | None = 30.0) -> int:
        """Write several settings atomically; returns the new revision (timeout as
        :meth:`set`)."""
        return int(self._call(self.client.settings.batch_set(values), timeout,
                              f"setting {', '.join(values)}").revision)

    def move(self, node: int | str, x: float, y: float, z: float,
             mode: Mode = "move") -> str | None:
        """Queue a node's position (None when queued, else why it was rejected)."""
        return self._soon(lambda: self.client.move(node, x, y, z, mode))

    def flush(self) -> None:
        """Send the queued positions now."""
        self._soon(self.client.positions.flush)

    def counters(self) -> dict[str, int]:
        """The BatchQueue's counters."""
        return self._soon(self.client.positions.counters.as_dict)

    def set_sssp_source(self, source: int | str | None) -> None:
        """Set (or clear) the shortest-path source."""
        self._soon(lambda: self.client.set_sssp_source(source))

    def wait_settled(self, timeout: float | None = 60.0) -> int:
        """Block until a frame says the layout is settled; returns its seq."""
        return self._call(self.client.wait_settled(), timeout, "waiting for the layout to settle")

    def wait_for(self, name: str, predicate: Callable[[Any], bool] | None = None,
                 timeout: float | None = 60.0) -> Any:
        """Block until the next event ``name`` for which ``predicate`` holds."""
        return self._call(self.client.wait_for(name, predicate), timeout,
                          f"waiting for a {name!r} event")

    def on(self, name: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        """Register a callback (it runs in the client's thread)."""
        return self._soon(lambda: self.client.on(name, callback))

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """``GET`` a REST route."""
        return self._call(self.client.get_json(path, params), 60.0, f"GET {path}")

    def post_json(self, path: str, body: Any, method: str = "POST") -> Any:
        """Send a JSON body to a REST route."""
        return self._call(self.client.post_json(path, body, method), 60.0,
                          f"{method} {path}")

    # -- closing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection and stop the background thread."""
        if self._closed:
            return
        if hasattr(self, "client"):
            with contextlib.suppress(TimeoutError, RuntimeError):
                self._call(self.client.close(), 10.0)
        self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self._loop).result(5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
