"""The settings service: typed values, revisions, dedup and sync (docs/protocol.md §5), no sockets.

Reads are served from memory; every accepted change set is committed to the store (one
transaction, on disk) before it is acknowledged, then applied to memory and handed to the
listeners in revision order (the server broadcasts it as a Delta and applies physics settings).
Validation is all or nothing: a change set with one bad entry changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from graphwire.protocol.errors import ProtocolError
from graphwire.protocol.settings_codec import (
    Entries,
    PathEntry,
    PathTable,
    SettingsErrorCode,
    Tag,
    Value,
    decode_value,
    settings_digest,
    value_hash,
)

from .schema import FIXED_PATH_IDS, SCHEMA_VERSION, Schema, Setting
from .store import SettingsStore


class SettingsError(Exception):
    """A request the settings service refuses: a §5 error code and a message."""

    def __init__(self, code: SettingsErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """One committed change: its revision, the converted values written, who wrote it."""

    revision: int
    entries: Entries
    origin: object | None


Listener = Callable[[ChangeSet], None]

_INTS = {Tag.I32: (-(2**31), 2**31 - 1), Tag.I64: (-(2**63), 2**63 - 1)}


def convert(setting: Setting, value: Value) -> Value:
    """The value as the setting's declared tag (§5 conversions), or a SettingsError."""
    want = setting.tag
    tag = value.tag
    if tag == want:
        out = value
    elif want in (Tag.F64, Tag.F32) and tag in (Tag.I32, Tag.I64, Tag.F32, Tag.F64):
        out = Value(want, float(value.data))
    elif want == Tag.I64 and tag == Tag.I32:
        out = Value(Tag.I64, int(value.data))
    else:
        raise SettingsError(SettingsErrorCode.TYPE_MISMATCH,
                            f"{setting.path} takes {want.name}, not {tag.name}")
    if want in _INTS:
        lo, hi = _INTS[want]
        if not lo <= out.data <= hi:
            raise SettingsError(SettingsErrorCode.INVALID_VALUE, f"{setting.path}: out of range")
    why = setting.check(out)
    if why is not None:
        raise SettingsError(SettingsErrorCode.INVALID_VALUE, why)
    return out


def from_json(value: Any) -> Value:
    """A JSON value as a typed settings value (ints → I32/I64, floats → F64)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(SettingsErrorCode.INVALID_VALUE, "numbers must be finite")
    try:
        return Value.of(value)
    except ValueError as exc:
        raise SettingsError(SettingsErrorCode.TYPE_MISMATCH, str(exc)) from None


class SettingsService:
    """Every setting's current value, and the rules for changing them."""

    def __init__(self, store: SettingsStore, schema: Schema | None = None, *,
                 admin_required: bool = False) -> None:
        self.store = store
        self.schema = schema or Schema()
        self.admin_required = admin_required
        ids = store.path_ids([s.path for s in self.schema], FIXED_PATH_IDS)
        self.id_of: dict[str, int] = ids
        self.by_id: dict[int, Setting] = {ids[s.path]: s for s in self.schema}
        stored = store.load()
        self.values: dict[int, Value] = {}
        missing: dict[int, bytes] = {}
        for pid, setting in self.by_id.items():
            value = None
            if pid in stored:
                try:
                    value = convert(setting, decode_value(stored[pid]))
                except (ProtocolError, SettingsError):
                    value = None  # a value from an older schema that no longer fits
            if value is None:
                value = setting.default_value
                missing[pid] = value.encode()
            self.values[pid] = value
        if missing:
            store.seed(missing)
        self.hashes = {pid: value_hash(v) for pid, v in self.values.items()}
        self.revision = store.revision
        self.epoch = 0
        self._listeners: list[Listener] = []

    # -- lifecycle ------------------------------------------------------------------------
    def start_epoch(self) -> int:
        """Raise the epoch (a start or reload of the source) and return it."""
        self.epoch = self.store.bump_epoch()
        return self.epoch

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every committed change set, in revision order."""
        self._listeners.append(listener)

    # -- reading ----------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        """The schema version (§6 ``settings.schemaVersion``)."""
        return SCHEMA_VERSION

    def path_table(self, ids: Iterable[int] | None = None) -> PathTable:
        """A PathTable of every path (or of ``ids``)."""
        chosen = sorted(self.by_id) if ids is None else sorted(ids)
        return PathTable(tuple(PathEntry(pid, self.by_id[pid].tag, self.by_id[pid].path)
                               for pid in chosen))

    def setting(self, pid: int) -> Setting:
        """The setting with an id, or SettingsError unknown_path."""
        s = self.by_id.get(pid)
        if s is None:
            raise SettingsError(SettingsErrorCode.UNKNOWN_PATH, f"unknown path id {pid}")
        return s

    def path_id(self, path: str) -> int:
        """The id of a dotted path, or SettingsError unknown_path."""
        pid = self.id_of.get(path)
        if pid is None:
            raise SettingsError(SettingsErrorCode.UNKNOWN_PATH, f"unknown setting {path!r}")
        return pid

    def get(self, ids: Iterable[int]) -> Entries:
        """Current values of paths (all must exist)."""
        ids = list(ids)
        for pid in ids:
            self.setting(pid)
        return tuple((pid, self.values[pid]) for pid in ids)

    def value(self, path: str) -> Any:
        """The current value of a path, as a plain Python value."""
        return self.values[self.path_id(path)].to_python()

    def digest(self) -> bytes:
        """blake3 over every path in ascending id (§5)."""
        return settings_digest(self.values)

    def snapshot(self) -> tuple[int, bytes, Entries]:
        """Revision, digest and every value."""
        return self.revision, self.digest(), tuple(sorted(self.values.items()))

    def sync(self, since: int) -> tuple[int, Entries] | tuple[int, bytes, Entries]:
        """Changes after ``since`` as (revision, entries), or a snapshot (revision, digest,
        entries) when ``since`` is 0, older than the change log, or newer than the revision."""
        if since == 0 or since > self.revision or since + 1 < self.store.oldest_logged():
            return self.snapshot()
        changed = self.store.changed_since(since)
        return self.revision, tuple((pid, self.values[pid]) for pid in changed
                                    if pid in self.values)

    def nested(self) -> dict[str, Any]:
        """Every value as one nested JSON object (``GET /api/settings``)."""
        out: dict[str, Any] = {}
        for pid, setting in self.by_id.items():
            node = out
            *parents, leaf = setting.path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = self.values[pid].to_python()
        return out

    # -- writing ----------------------------------------------------------------------------
    def apply(self, entries: Iterable[tuple[int, Value]], *, admin: bool = False,
              origin: object | None = None) -> tuple[int, Entries]:
        """Validate every entry, drop the unchanged, commit the rest as one revision.

        Returns the revision (unchanged when nothing changed) and the converted entries that
        were written. All or nothing: on any error nothing changes.
        """
        staged: dict[int, Value] = {}
        for pid, value in entries:
            setting = self.setting(pid)
            if setting.admin and self.admin_required and not admin:
                raise SettingsError(SettingsErrorCode.FORBIDDEN,
                                    f"{setting.path} can only be written with the admin token")
            staged[pid] = convert(setting, value)  # the last entry for a path wins
        changed = tuple((pid, v) for pid, v in staged.items()
                        if value_hash(v) != self.hashes[pid])
        if not changed:
            return self.revision, ()
        revision = self.store.commit([(pid, v.encode()) for pid, v in changed])
        self._take(revision, changed, origin)
        return revision, changed

    def apply_committed(self, revision: int, entries: Entries,
                        origin: object | None = None) -> bool:
        """Take a change set the writer committed as ``revision`` (a replica: a gateway's
        mirror or a standby simulation). Change sets at or below the current revision are
        ignored (seen already); False when ``revision`` skips one (the caller reloads the full
        state with :meth:`adopt`)."""
        if revision <= self.revision:
            return True
        if revision != self.revision + 1:
            return False
        known = tuple((pid, v) for pid, v in entries if pid in self.by_id)
        if self.store.revision < revision:
            self.store.commit([(pid, v.encode()) for pid, v in known], revision=revision)
        self._take(revision, known, origin)
        return True

    def adopt(self, revision: int, values: dict[int, Value]) -> None:
        """Take the writer's whole state at ``revision``; listeners get what differs as one
        change set (a replica that missed change sets catches up in one step)."""
        known = {pid: v for pid, v in values.items() if pid in self.by_id}
        changed = tuple((pid, v) for pid, v in sorted(known.items())
                        if value_hash(v) != self.hashes[pid])
        if self.store.revision != revision or changed:
            self.store.adopt({pid: v.encode() for pid, v in known.items()}, revision)
        self._take(revision, changed, None)

    def _take(self, revision: int, changed: Entries, origin: object | None) -> None:
        for pid, v in changed:
            self.values[pid] = v
            self.hashes[pid] = value_hash(v)
        self.revision = revision
        if changed:
            change = ChangeSet(revision, changed, origin)
            for listener in self._listeners:
                listener(change)

    def apply_paths(self, values: dict[str, Any], *, admin: bool = False,
                    origin: object | None = None) -> tuple[int, Entries]:
        """:meth:`apply` for dotted paths and JSON values (REST)."""
        return self.apply([(self.path_id(p), from_json(v)) for p, v in values.items()],
                          admin=admin, origin=origin)

    def path_of(self, pid: int) -> str:
        """The dotted path of an id."""
        return self.setting(pid).path
