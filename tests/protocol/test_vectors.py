"""Every golden vector round-trips byte-exact (docs/protocol.md §4.7, §4.8, §5)."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

from graphwire.protocol import settings_codec as sc
from graphwire.protocol.client_positions import decode_client_positions, encode_client_positions
from graphwire.protocol.positions import NodeRecords, decode_v1, decode_v2, encode_v1, encode_v2
from tests.conftest import SHARED_VECTORS, VECTORS, load_vector

POSITIONS = load_vector("positions.json")["cases"]
SETTINGS = load_vector("settings.json")
CLIENT = load_vector("client_positions.json")["cases"]


def test_repo_copy_matches_the_shared_contract() -> None:
    if not SHARED_VECTORS.is_dir():
        pytest.skip("../shared/vectors is not beside this checkout")
    for shared in SHARED_VECTORS.glob("*.json"):
        assert (VECTORS / shared.name).read_bytes() == shared.read_bytes(), shared.name


def _num(v: float | str) -> float:
    return math.inf if v == "inf" else float(v)


def _records(case: dict) -> NodeRecords:
    nodes = case["nodes"]
    return NodeRecords.build(
        [n["id"] for n in nodes],
        [[n["x"], n["y"], n["z"]] for n in nodes],
        agent=[n["type"] == "agent" for n in nodes],
        vel=[[n["vx"], n["vy"], n["vz"]] for n in nodes],
        dist=[_num(n["ssspDistance"]) for n in nodes],
        parent=[n["ssspParent"] for n in nodes],
    )


@pytest.mark.parametrize("case", POSITIONS, ids=[c["name"] for c in POSITIONS])
def test_position_vectors_encode_byte_exact(case: dict) -> None:
    encode = encode_v1 if case["kind"] == 1 else encode_v2
    out = encode(_records(case), seq=case["seq"], epoch=case["epochLow16"], flags=case["flags"])
    assert out.hex() == case["hex"]


@pytest.mark.parametrize("case", POSITIONS, ids=[c["name"] for c in POSITIONS])
def test_position_vectors_decode(case: dict) -> None:
    decode = decode_v1 if case["kind"] == 1 else decode_v2
    frame = decode(bytes.fromhex(case["hex"]))
    assert frame.header.kind == case["kind"]
    assert frame.header.flags == case["flags"]
    assert frame.header.epoch16 == case["epochLow16"]
    assert frame.header.seq == case["seq"]
    want = _records(case)
    got = frame.nodes
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.agent, want.agent)
    np.testing.assert_array_equal(got.pos, want.pos)
    np.testing.assert_array_equal(got.vel, want.vel)
    np.testing.assert_array_equal(got.dist, want.dist)
    np.testing.assert_array_equal(got.parent, want.parent)


@pytest.mark.parametrize("case", CLIENT, ids=[c["name"] for c in CLIENT])
def test_client_positions_vector(case: dict) -> None:
    items = case["items"]
    out = encode_client_positions(
        [i[0] for i in items], [i[1:] for i in items], batch=case["batch"], epoch=0xABCD,
        pin=case["pin"],
    )
    assert out.hex() == case["hex"]
    frame = decode_client_positions(bytes.fromhex(case["hex"]))
    assert frame.batch == case["batch"] and frame.pin == case["pin"] and not frame.release
    assert frame.ids.tolist() == [i[0] for i in items]
    assert frame.pos.tolist() == [i[1:] for i in items]


def _typed(tag: str, value: object) -> sc.Value:
    t = sc.Tag[tag.upper()]
    if t == sc.Tag.BYTES:
        return sc.Value(t, bytes.fromhex(str(value)))
    if t in (sc.Tag.ARRAY, sc.Tag.OBJECT):
        return sc.Value.of(value)
    return sc.Value(t, value)


@pytest.mark.parametrize("case", SETTINGS["values"], ids=lambda c: f"{c['tag']}:{c['hex']}")
def test_settings_value_vectors(case: dict) -> None:
    value = _typed(case["tag"], case["value"])
    assert value.encode().hex() == case["hex"]
    back = sc.decode_value(bytes.fromhex(case["hex"]))
    assert back == value
    assert back.encode().hex() == case["hex"]


@pytest.mark.parametrize("case", SETTINGS["messages"],
                         ids=[c["name"] for c in SETTINGS["messages"]])
def test_settings_message_vectors(case: dict) -> None:
    raw = bytes.fromhex(case["hex"])
    msg = sc.decode_settings(raw)
    plain = raw[2:] if not case["compressed"] else gzip.decompress(raw[2:])
    # Re-encoding gives the same plain body; the compression decision matches the vector's.
    assert sc.encode_body(msg) == plain
    again = sc.encode_settings(msg)
    assert again[1] == (0xFF if case["compressed"] else 0x00)
    assert sc.settings_body(again) == plain
    if not case["compressed"]:
        assert again == raw


def test_settings_message_vector_contents() -> None:
    by_name = {c["name"]: bytes.fromhex(c["hex"]) for c in SETTINGS["messages"]}
    assert sc.decode_settings(by_name["Get req 7 path 1"]) == sc.Get(7, 1)
    assert sc.decode_settings(by_name["Set req 8 path 2 (spring_k) to 0.07 as F64"]) == sc.Set(
        8, 2, sc.Value(sc.Tag.F64, 0.07)
    )
    delta = sc.decode_settings(by_name["Delta revision 42: damping 0.9, repel_k 75"])
    assert delta == sc.Delta(42, ((1, sc.Value(sc.Tag.F64, 0.9)), (3, sc.Value(sc.Tag.I32, 75))))
    err = sc.decode_settings(by_name["Error req 9 code 2 type_mismatch"])
    assert err == sc.Error(9, sc.SettingsErrorCode.TYPE_MISMATCH, "type mismatch")
    big = sc.decode_settings(
        by_name["BatchSet req 13 with a long string: body over 256 bytes, sent gzip-compressed"]
    )
    assert isinstance(big, sc.BatchSet) and big.req == 13
    assert sum(len(v.encode()) for _, v in big.entries) > 256
