"""The settings service without sockets: typed writes, dedup, all or nothing, admin, sync,
listeners and durability (§5), on a real SQLite file."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from graphwire.protocol.settings_codec import SettingsErrorCode, Tag, Value
from graphwire.settings import ChangeSet, SettingsError, SettingsService, SettingsStore
from graphwire.settings.schema import FIXED_PATH_IDS, KNOWLEDGE_PHYSICS, build_schema, default_of
from graphwire.simulation import PhysicsParams

DAMPING = KNOWLEDGE_PHYSICS + "damping"
OPACITY = "visualisation.rendering.edges.opacity"


@pytest.fixture
def service(tmp_path: Path) -> SettingsService:
    return SettingsService(SettingsStore(tmp_path / "s.db"))


def test_values_start_at_the_schema_defaults_with_the_fixed_ids(
        service: SettingsService) -> None:
    assert service.revision == 0
    for path, pid in FIXED_PATH_IDS.items():
        assert service.path_id(path) == pid
        assert service.value(path) == default_of(path)
    assert service.value("system.websocket.minUpdateRate") == 5.0


def test_a_write_is_converted_to_the_declared_tag(service: SettingsService) -> None:
    revision, written = service.apply([(1, Value(Tag.F32, 0.5))])
    assert revision == 1 and written == ((1, Value(Tag.F64, 0.5)),)
    revision, written = service.apply([(8, Value(Tag.I32, 7))])  # iterations: I64
    assert revision == 2 and written == ((8, Value(Tag.I64, 7)),)
    assert service.value(DAMPING) == 0.5
    with pytest.raises(SettingsError) as bad:
        service.apply([(1, Value(Tag.STRING, "fast"))])
    assert bad.value.code == SettingsErrorCode.TYPE_MISMATCH
    assert service.revision == 2


def test_equal_values_commit_nothing_and_tell_no_one(service: SettingsService) -> None:
    seen: list[ChangeSet] = []
    service.subscribe(seen.append)
    pid = service.path_id(OPACITY)
    rev1, _ = service.apply([(pid, Value(Tag.F64, 0.5))])
    rev2, written = service.apply([(pid, Value(Tag.F64, 0.5))])
    assert rev2 == rev1 == 1 and written == ()
    assert [c.revision for c in seen] == [1]


def test_a_batch_with_one_bad_entry_changes_nothing(service: SettingsService) -> None:
    pid = service.path_id(OPACITY)
    with pytest.raises(SettingsError) as bad:
        service.apply([(pid, Value(Tag.F64, 0.2)), (1, Value(Tag.F64, 99.0))])
    assert bad.value.code == SettingsErrorCode.INVALID_VALUE
    assert service.value(OPACITY) == default_of(OPACITY) and service.revision == 0
    with pytest.raises(SettingsError) as unknown:
        service.apply([(pid, Value(Tag.F64, 0.2)), (99_999, Value(Tag.F64, 1.0))])
    assert unknown.value.code == SettingsErrorCode.UNKNOWN_PATH
    assert service.revision == 0


def test_system_paths_need_the_admin_when_one_is_required(tmp_path: Path) -> None:
    svc = SettingsService(SettingsStore(tmp_path / "a.db"), admin_required=True)
    with pytest.raises(SettingsError) as refused:
        svc.apply_paths({"system.websocket.minUpdateRate": 2})
    assert refused.value.code == SettingsErrorCode.FORBIDDEN
    assert svc.apply_paths({"system.websocket.minUpdateRate": 2}, admin=True)[0] == 1
    assert svc.apply_paths({OPACITY: 0.1})[0] == 2  # other paths need no admin


def test_listeners_get_each_change_in_order_with_its_origin(service: SettingsService) -> None:
    seen: list[ChangeSet] = []
    service.subscribe(seen.append)
    origin = object()
    service.apply_paths({OPACITY: 0.1}, origin=origin)
    service.apply_paths({DAMPING: 0.7, OPACITY: 0.2})
    assert [c.revision for c in seen] == [1, 2]
    assert seen[0].origin is origin and seen[1].origin is None
    assert dict(seen[1].entries) == {1: Value(Tag.F64, 0.7),
                                     service.path_id(OPACITY): Value(Tag.F64, 0.2)}


def test_sync_answers_changes_within_the_log_and_a_snapshot_otherwise(tmp_path: Path) -> None:
    svc = SettingsService(SettingsStore(tmp_path / "l.db", log_revisions=2))
    for k in range(4):
        svc.apply_paths({OPACITY: 0.1 * (k + 1)})
    svc.apply_paths({DAMPING: 0.6})  # revision 5; the log keeps revisions 4 and 5
    since4 = svc.sync(4)
    assert len(since4) == 2 and since4[0] == 5 and [p for p, _ in since4[1]] == [1]
    for since in (0, 1, 6):  # never, older than the log, newer than the revision
        snap = svc.sync(since)
        assert len(snap) == 3 and snap[1] == svc.digest() and len(snap[2]) == len(svc.by_id)


def test_a_commit_survives_a_reopen_and_the_epoch_grows(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    svc = SettingsService(SettingsStore(db))
    assert svc.start_epoch() == 1
    svc.apply_paths({OPACITY: 0.25})
    digest = svc.digest()
    svc.store.close()
    again = SettingsService(SettingsStore(db))
    assert again.value(OPACITY) == 0.25 and again.revision == 1 and again.digest() == digest
    assert again.start_epoch() == 2


def test_the_schema_and_physics_params_agree_on_every_default_and_range() -> None:
    """One source: the schema's physics settings are PhysicsParams' knobs, and a value the
    schema accepts is one PhysicsParams.validate accepts (and the other way round)."""
    params = PhysicsParams()
    ranges = PhysicsParams.ranges()
    for setting in build_schema():
        if ".physics." not in setting.path:
            continue
        name = setting.path.rsplit(".", 1)[1]
        assert setting.default == getattr(params, name)
        lo, hi = ranges[name]
        if setting.tag == Tag.BOOL:
            continue
        for value in {v for v in (lo, hi) if v is not None}:
            for near in (value, value * 1.001 + 1e-6, value * 0.999 - 1e-6):
                probe = near
                if setting.tag == Tag.I64:
                    probe = math.floor(near) if near < value else math.ceil(near)
                typed = Value(setting.tag, probe)
                schema_ok = setting.check(typed) is None
                try:
                    dataclasses.replace(params, **{name: typed.data}).validate()
                    params_ok = True
                except ValueError:
                    params_ok = False
                assert schema_ok == params_ok, (setting.path, probe)
