"""Settings writes as the routes and the settings endpoint make them, in every role.

:class:`LocalSettingsWrites` commits in this process (a single process, or the simulation holding
the lease). :class:`RemoteSettingsWrites` is a gateway's: it forwards the write to the one writer
of revisions and answers once its own mirror holds the revision, so a read after the reply sees
the write. Both raise what the settings service raises, so callers need not know which they have.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from graphwire.cluster.commands import (
    CommandClient,
    CommandFailedError,
    CommandUnavailableError,
)
from graphwire.protocol import settings_codec as sc
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.protocol.settings_codec import Entries, Value
from graphwire.settings import SettingsError, SettingsService
from graphwire.settings.service import from_json


def command_error(exc: Exception) -> Exception:
    """A failed or unanswered command as the exception the local service would raise."""
    if isinstance(exc, CommandUnavailableError):
        return ProtocolError(ErrorCode.INTERNAL, f"the simulation is unavailable: {exc}",
                             retry_after_ms=1000)
    if isinstance(exc, CommandFailedError):
        err = exc.error
        kind, message = err.get("kind"), str(err.get("message", "refused"))
        if kind == "graph":
            return ProtocolError(ErrorCode(str(err.get("code", "invalid_value"))), message)
        if kind == "settings":
            return SettingsError(sc.SettingsErrorCode(int(err["code"])), message)
        if kind == "protocol":
            return ProtocolError(ErrorCode(str(err["code"])), message)
        return ProtocolError(ErrorCode.INTERNAL, message)
    return exc


def delta_b64(revision: int, entries: Entries) -> str:
    """Settings entries as a Delta body in base64: how the ``settings`` command carries them
    (its request and its reply are JSON)."""
    return base64.b64encode(sc.encode_body(sc.Delta(revision, entries))).decode()


def delta_of_b64(text: str) -> sc.Delta:
    """The Delta :func:`delta_b64` wrote."""
    msg = sc.decode_body(base64.b64decode(text))
    assert isinstance(msg, sc.Delta)
    return msg


class Commit(NamedTuple):
    """What one write did, as the writer of revisions saw it: the revision, the entries it
    changed, and the value each written path held just before (read in the same step as the
    commit, so concurrent writers each see the value their own write replaced)."""

    revision: int
    written: Entries
    previous: Entries


class _Writes:
    """What both kinds of writes share: REST's dotted paths and JSON values on top of
    ``commit``."""

    service: SettingsService

    async def commit(self, entries: Iterable[tuple[int, Value]], *, admin: bool = False,
                     origin: object | None = None) -> Commit:
        """Validate and commit ``(path id, value)`` pairs (see :class:`Commit`)."""
        raise NotImplementedError

    async def apply(self, entries: Iterable[tuple[int, Value]], *, admin: bool = False,
                    origin: object | None = None) -> tuple[int, Entries]:
        """Validate and commit ``(path id, value)`` pairs; (revision, what changed)."""
        done = await self.commit(entries, admin=admin, origin=origin)
        return done.revision, done.written

    async def put(self, path: str, value: Any, *, admin: bool = False) -> tuple[int, Any, Any]:
        """One dotted path set to a JSON value (REST ``PUT``): (revision, the value as
        committed, the value it replaced), both as plain Python values."""
        pid = self.service.path_id(path)
        done = await self.commit([(pid, from_json(value))], admin=admin)
        before = dict(done.previous)[pid]
        after = dict(done.written).get(pid, before)
        return done.revision, after.to_python(), before.to_python()

    async def apply_paths(self, values: dict[str, Any], *, admin: bool = False,
                          origin: object | None = None) -> tuple[int, Entries]:
        """:meth:`apply` for dotted paths and JSON values (REST)."""
        return await self.apply([(self.service.path_id(p), from_json(v))
                                 for p, v in values.items()], admin=admin, origin=origin)


class LocalSettingsWrites(_Writes):
    """Settings writes in the process that owns the settings (a single process, or the
    simulation holding the lease; a standby refuses them: it is not the writer)."""

    def __init__(self, service: SettingsService,
                 writable: Callable[[], bool] = lambda: True) -> None:
        self.service = service
        self.writable = writable

    async def commit(self, entries: Iterable[tuple[int, Value]], *, admin: bool = False,
                     origin: object | None = None) -> Commit:
        """Validate and commit (see :meth:`SettingsService.apply`)."""
        if not self.writable():
            raise ProtocolError(ErrorCode.INTERNAL, "this simulation is a standby: write "
                                "through a gateway", retry_after_ms=1000)
        return commit_here(self.service, entries, admin=admin, origin=origin)


def commit_here(service: SettingsService, entries: Iterable[tuple[int, Value]], *,
                admin: bool, origin: object | None) -> Commit:
    """Commit in this process, the values replaced read in the same step (no await between)."""
    entries = list(entries)
    previous = service.get(dict.fromkeys(pid for pid, _ in entries))
    revision, written = service.apply(entries, admin=admin, origin=origin)
    return Commit(revision, written, previous)


class RemoteSettingsWrites(_Writes):
    """Settings writes from a gateway: forwarded to the one writer, answered once the mirror
    holds the revision (so a read after the reply sees it)."""

    def __init__(self, service: SettingsService, commands: CommandClient,
                 reached: Callable[[int], Any], gateway: str) -> None:
        self.service = service
        self.commands = commands
        self.reached = reached
        self.gateway = gateway
        self._origins: dict[str, object] = {}
        self._n = 0

    def origin_of(self, tag: str) -> object | None:
        """The local connection that wrote a change set (it gets the Response, not a Delta)."""
        return self._origins.get(tag)

    async def commit(self, entries: Iterable[tuple[int, Value]], *, admin: bool = False,
                     origin: object | None = None) -> Commit:
        """Write through the simulation; what it did as the writer says."""
        self._n += 1
        tag = f"{self.gateway}:{self._n}"
        if origin is not None:
            self._origins[tag] = origin
        try:
            out = await self.commands.call("settings", {
                "delta": delta_b64(0, tuple(entries)), "admin": admin, "origin": tag})
            revision = int(out["revision"])
            written, previous = delta_of_b64(out["written"]), delta_of_b64(out["previous"])
            async with asyncio.timeout(self.commands.timeout):
                await self.reached(revision)
        except (CommandUnavailableError, CommandFailedError) as exc:
            raise command_error(exc) from None
        except TimeoutError:
            raise ProtocolError(ErrorCode.INTERNAL, "the settings change was committed but "
                                "has not reached this gateway yet", retry_after_ms=1000) from None
        finally:
            self._origins.pop(tag, None)
        return Commit(revision, written.entries, previous.entries)
