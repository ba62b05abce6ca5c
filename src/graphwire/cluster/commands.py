"""Commands from gateways to the simulation (drags, topology and settings writes) and replies.

A gateway appends a command to the ``commands`` stream (``XADD``: durable in Redis, read in
order) and waits for the reply on its own channel. The lease holder reads the stream from where
it took the lease, runs each command in order, and publishes the reply. A command that gets no
reply within ``timeout`` (no holder, a takeover in progress, Redis down) fails with
:class:`CommandUnavailableError`, which a gateway reports to its client as a retryable ``internal``
error: nothing is half-done, because only the holder applies commands and it replies after.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .link import COMMANDS_MAXLEN, Link, RedisDownError

log = logging.getLogger("graphwire.cluster")

DEFAULT_TIMEOUT = 5.0
"""Seconds a gateway waits for the simulation to answer a command (a takeover takes up to
the lease ttl, 3 s by default)."""


class CommandUnavailableError(Exception):
    """The simulation did not answer (none holds the lease, or Redis is unreachable)."""


class CommandFailedError(Exception):
    """The simulation refused a command: ``error`` says why (``kind``, ``code``, ``message``)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "refused")))
        self.error = error


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class CommandClient:
    """A gateway's side: send a command, wait for its reply."""

    def __init__(self, link: Link, gateway: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.link = link
        self.gateway = gateway
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.sent = 0
        self.timeouts = 0

    def start(self) -> None:
        """Listen for replies."""
        self.link.subscribe([self.link.keys.reply(self.gateway)], self._on_reply)

    async def _on_reply(self, data: bytes) -> None:
        reply = json.loads(data)
        fut = self._waiting.pop(int(reply["id"]), None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def call(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run ``op`` on the simulation: its result, or CommandFailedError (refused) or
        CommandUnavailableError (no answer)."""
        cid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = fut
        fields = {"gw": self.gateway, "id": cid, "op": op,
                  "body": json.dumps(body, separators=(",", ":"))}
        try:
            await self.link.call(lambda: self.link.redis.xadd(
                self.link.keys.commands, fields,  # type: ignore[arg-type]
                maxlen=COMMANDS_MAXLEN, approximate=True))
            self.sent += 1
            reply = await asyncio.wait_for(fut, self.timeout)
        except RedisDownError as exc:
            raise CommandUnavailableError(f"redis is unreachable ({exc})") from None
        except TimeoutError:
            self.timeouts += 1
            raise CommandUnavailableError(
                f"the simulation did not answer {op!r} within {self.timeout:g} s") from None
        finally:
            self._waiting.pop(cid, None)
        if not reply.get("ok"):
            raise CommandFailedError(reply.get("error") or {})
        result: dict[str, Any] = reply.get("result") or {}
        return result


class CommandServer:
    """The lease holder's side: read commands in order, run them, reply."""

    def __init__(self, link: Link, handlers: dict[str, Handler],
                 errors: Callable[[Exception], dict[str, Any] | None]) -> None:
        self.link = link
        self.handlers = handlers
        self.errors = errors  # an exception as a reply error, or None: not a refusal
        self.last_id = "$"
        self.handled = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start reading at the stream's current end (commands sent before are stale)."""
        entries = await self.link.call(lambda: self.link.redis.xrevrange(
            self.link.keys.commands, count=1))
        self.last_id = entries[0][0].decode() if entries else "0-0"
        self._task = self.link.spawn(self._loop())

    def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                batch = await self.link.call(lambda: self.link.redis.xread(
                    {self.link.keys.commands: self.last_id}, count=100, block=1000))
            except RedisDownError:
                await asyncio.sleep(0.2)
                continue
            for _stream, entries in batch or []:
                for entry_id, fields in entries:
                    self.last_id = entry_id.decode()
                    await self._run({k.decode(): v.decode() for k, v in fields.items()})

    async def _run(self, fields: dict[str, str]) -> None:
        reply: dict[str, Any] = {"id": int(fields["id"])}
        handler = self.handlers.get(fields["op"])
        try:
            if handler is None:
                raise KeyError(f"unknown command {fields['op']!r}")
            reply["result"] = await handler(json.loads(fields["body"]))
            reply["ok"] = True
        except Exception as exc:
            error = self.errors(exc)
            if error is None:
                log.exception("cluster: command %s failed", fields["op"])
                error = {"kind": "internal", "message": "internal error"}
            reply["ok"] = False
            reply["error"] = error
        self.handled += 1
        data = json.dumps(reply, separators=(",", ":"), allow_nan=False)
        with contextlib.suppress(RedisDownError):  # the gateway times out, its client retries
            await self.link.call(lambda: self.link.redis.publish(
                self.link.keys.reply(fields["gw"]), data))
