"""Property tests: random values round-trip for every kind; random and mutated bytes raise only
the protocol error (never another exception, never a hang, never a huge allocation)."""

from __future__ import annotations

import contextlib
import gzip
import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphwire.protocol import QDecoder, QStreamEncoder, control, decode_q
from graphwire.protocol import settings_codec as sc
from graphwire.protocol.client_positions import decode_client_positions, encode_client_positions
from graphwire.protocol.compression import gunzip_bounded
from graphwire.protocol.errors import ErrorCode, ProtocolError
from graphwire.protocol.header import Flags, frame_kind
from graphwire.protocol.positions import NodeRecords, decode_v1, decode_v2, encode_v1, encode_v2
from graphwire.protocol.sssp import decode_sssp, encode_sssp

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
f32 = st.floats(width=32, allow_nan=False)
f32_any = st.floats(width=32)


@st.composite
def node_records(draw: st.DrawFn, max_id: int) -> NodeRecords:
    n = draw(st.integers(0, 40))
    ids = draw(st.lists(st.integers(0, max_id), min_size=n, max_size=n))
    flat = st.lists(f32_any, min_size=3 * n, max_size=3 * n)
    return NodeRecords.build(
        ids, np.array(draw(flat), np.float32).reshape(n, 3),
        agent=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        vel=np.array(draw(flat), np.float32).reshape(n, 3),
        dist=draw(st.lists(f32_any, min_size=n, max_size=n)),
        parent=draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=n, max_size=n)),
    )


def same_floats(a: np.ndarray, b: np.ndarray) -> bool:
    return a.tobytes() == b.tobytes()  # bit-exact, NaN payloads included


header_args = st.tuples(
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
    st.sampled_from([0, Flags.KEYFRAME, Flags.SETTLED, Flags.KEYFRAME | Flags.SETTLED]),
)


@FAST
@given(nodes=node_records(0x3FFFFFFF), hdr=header_args)
def test_v2_roundtrip(nodes: NodeRecords, hdr: tuple[int, int, int]) -> None:
    seq, epoch, flags = hdr
    frame = decode_v2(encode_v2(nodes, seq=seq, epoch=epoch, flags=flags))
    assert (frame.header.seq, frame.header.epoch16, frame.header.flags) == (
        seq, epoch & 0xFFFF, flags)
    assert frame.nodes.ids.tolist() == nodes.ids.tolist()
    assert frame.nodes.agent.tolist() == nodes.agent.tolist()
    for col in ("pos", "vel", "dist", "parent"):
        assert same_floats(getattr(frame.nodes, col), getattr(nodes, col))


@FAST
@given(nodes=node_records(0x3FFF), hdr=header_args)
def test_v1_roundtrip(nodes: NodeRecords, hdr: tuple[int, int, int]) -> None:
    seq, epoch, flags = hdr
    frame = decode_v1(encode_v1(nodes, seq=seq, epoch=epoch, flags=flags))
    assert frame.nodes.ids.tolist() == nodes.ids.tolist()
    assert frame.nodes.agent.tolist() == nodes.agent.tolist()
    assert same_floats(frame.nodes.pos, nodes.pos)


def test_v1_refuses_ids_it_cannot_write() -> None:
    nodes = NodeRecords.build([1, 16384], np.zeros((2, 3)))
    with pytest.raises(ProtocolError) as info:
        encode_v1(nodes, seq=1, epoch=1)
    assert info.value.code == ErrorCode.FORMAT_UNSUPPORTED


@FAST
@given(
    n=st.integers(0, 300), source=st.one_of(st.none(), st.integers(0, 299)),
    seq=st.integers(0, 2**32 - 1), data=st.data(),
)
def test_sssp_roundtrip(n: int, source: int | None, seq: int, data: st.DataObject) -> None:
    if source is not None and source >= n:
        source = None
    dist = np.array(data.draw(st.lists(f32_any, min_size=n, max_size=n)), np.float32)
    parent = np.array(data.draw(st.lists(st.integers(-1, 2**31 - 1), min_size=n, max_size=n)),
                      np.int32)
    raw = encode_sssp(source, dist, parent, seq=seq, epoch=3)
    frame = decode_sssp(raw)
    assert frame.source == source and frame.header.seq == seq
    assert same_floats(frame.distance, dist)
    assert frame.parent.tolist() == parent.tolist()


def test_sssp_compresses_only_when_it_pays() -> None:
    n = 5000
    dist = np.full(n, np.inf, np.float32)
    parent = np.full(n, -1, np.int32)
    raw = encode_sssp(None, dist, parent, seq=1, epoch=1)
    assert raw[1] & Flags.COMPRESSED and len(raw) < 200
    noise = np.random.default_rng(0).random(n).astype(np.float32)
    raw2 = encode_sssp(0, noise, np.arange(n), seq=1, epoch=1)
    assert decode_sssp(raw2).distance.tolist() == noise.tolist()


@FAST
@given(
    items=st.lists(st.tuples(st.integers(0, 2**32 - 1), f32, f32, f32), max_size=50),
    batch=st.integers(0, 2**32 - 1), mode=st.sampled_from(["none", "pin", "release"]),
)
def test_client_positions_roundtrip(items: list[tuple[int, float, float, float]], batch: int,
                                    mode: str) -> None:
    raw = encode_client_positions([i[0] for i in items], [i[1:] for i in items], batch=batch,
                                  epoch=9, pin=mode == "pin", release=mode == "release")
    frame = decode_client_positions(raw)
    assert frame.batch == batch and frame.pin == (mode == "pin")
    assert frame.release == (mode == "release")
    assert frame.ids.tolist() == [i[0] for i in items]
    assert frame.pos.reshape(-1).tolist() == [c for i in items for c in i[1:]]


# -- settings values and messages ------------------------------------------------------------

scalars = st.one_of(
    st.just(sc.Value(sc.Tag.NULL, None)),
    st.builds(lambda b: sc.Value(sc.Tag.BOOL, b), st.booleans()),
    st.builds(lambda i: sc.Value(sc.Tag.I32, i), st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda i: sc.Value(sc.Tag.I64, i), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda f: sc.Value(sc.Tag.F32, f), st.floats(width=32, allow_nan=False)),
    st.builds(lambda f: sc.Value(sc.Tag.F64, f), st.floats(allow_nan=False)),
    st.builds(lambda s: sc.Value(sc.Tag.STRING, s), st.text(max_size=40)),
    st.builds(lambda b: sc.Value(sc.Tag.BYTES, b), st.binary(max_size=40)),
)


def _obj(items: list[tuple[str, sc.Value]]) -> sc.Value:
    return sc.Value(sc.Tag.OBJECT, tuple(dict(items).items()))


values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.builds(lambda xs: sc.Value(sc.Tag.ARRAY, tuple(xs)), st.lists(inner, max_size=5)),
        st.builds(_obj, st.lists(st.tuples(st.text(max_size=8), inner), max_size=5)),
    ),
    max_leaves=30,
)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
ents = st.lists(st.tuples(u32, values), max_size=8).map(tuple)
messages = st.one_of(
    st.builds(sc.Get, u32, u32),
    st.builds(sc.Set, u32, u32, values),
    st.builds(sc.BatchGet, u32, st.lists(u32, max_size=20).map(tuple)),
    st.builds(sc.BatchSet, u32, ents),
    st.builds(sc.Delta, u64, ents),
    st.builds(sc.Response, u32, u64, ents),
    st.builds(sc.Error, u32, st.integers(0, 65535), st.text(max_size=60)),
    st.builds(sc.Ping, u64),
    st.builds(sc.Pong, u64),
    st.builds(sc.PathTable, st.lists(
        st.builds(sc.PathEntry, u32, st.sampled_from(list(sc.Tag)), st.text(max_size=60)),
        max_size=8).map(tuple)),
    st.builds(sc.Sync, u32, u64),
    st.builds(sc.Snapshot, u32, u64, st.binary(min_size=32, max_size=32), ents),
)


@FAST
@given(value=values)
def test_settings_value_roundtrip(value: sc.Value) -> None:
    raw = value.encode()
    assert sc.decode_value(raw).encode() == raw


@FAST
@given(msg=messages, compress=st.sampled_from([None, True, False]))
def test_settings_message_roundtrip(msg: sc.SettingsMessage, compress: bool | None) -> None:
    raw = sc.encode_settings(msg, compress=compress)
    back = sc.decode_settings(raw)
    assert sc.encode_body(back) == sc.encode_body(msg)


def test_settings_nesting_is_limited() -> None:
    deep = sc.Value(sc.Tag.NULL, None)
    for _ in range(33):
        deep = sc.Value(sc.Tag.ARRAY, (deep,))
    raw = b"\x08\x01\x00\x00\x00" * 40 + b"\x00"
    with pytest.raises(ProtocolError, match="deeper"):
        sc.decode_value(raw)
    with pytest.raises(ValueError):
        deep.encode()


def test_settings_huge_count_does_not_allocate() -> None:
    raw = bytes([0x10, 0x00, 0x03]) + struct.pack("<II", 1, 0xFFFFFFFF)
    with pytest.raises(ProtocolError, match="cannot fit"):
        sc.decode_settings(raw)


# -- control messages -----------------------------------------------------------------------

client_msgs = st.one_of(
    st.builds(control.Subscribe, st.sampled_from(["v1", "v2"]), st.none() | st.integers(0, 10000),
              st.none(), st.none() | st.text(max_size=5) | st.integers(-5, 5)),
    st.builds(control.Subscribe, st.just("q"), st.none() | st.integers(0, 10000),
              st.none() | st.booleans()),
    st.builds(control.Unsubscribe, st.none() | st.integers()),
    st.builds(control.Ping, st.none() | st.integers(0, 2**53)),
    st.builds(control.RequestKeyframe),
    st.builds(control.Resume, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
              st.integers(0, 2**63)),
    st.builds(control.SetSsspSource, st.none() | st.integers(0, 2**30 - 1)),
)


@FAST
@given(msg=client_msgs)
def test_client_message_roundtrip(msg: control.ClientMessage) -> None:
    assert control.parse_client_message(control.dumps(msg)) == msg


server_msgs = st.one_of(
    st.builds(control.SubscriptionConfirmed, st.sampled_from(["v1", "v2", "q"]),
              st.integers(16, 10000), st.booleans()),
    st.builds(control.Pong, st.integers(0, 2**53)),
    st.builds(control.PositionsAck, u32, st.integers(0, 1000), st.lists(
        st.builds(control.Rejected, u32, st.sampled_from(control.REJECT_REASONS)),
        max_size=4).map(tuple)),
    st.builds(control.RateLimitWarning, st.sampled_from(["control", "positions"]),
              st.text(max_size=20), st.integers(1, 10**6)),
    st.builds(control.GraphChanged, u32, st.integers(0, 100), st.integers(0, 100),
              st.integers(0, 100), st.just({"nodes": [], "edges": []}),
              st.just({"nodes": [1], "edges": [[1, 2]]})),
    st.builds(lambda code, m: control.ErrorMessage.of(ProtocolError(code, m), "x"),
              st.sampled_from(list(ErrorCode)), st.text(max_size=20)),
)


@FAST
@given(msg=server_msgs)
def test_server_message_roundtrip(msg: control.ServerMessage) -> None:
    assert control.parse_server_message(control.dumps(msg)) == msg


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", ErrorCode.MALFORMED_FRAME),
        ("[1, 2]", ErrorCode.MALFORMED_FRAME),
        ('{"type": "dance"}', ErrorCode.UNKNOWN_MESSAGE),
        ('{"type": "subscribe", "format": "v9"}', ErrorCode.FORMAT_UNSUPPORTED),
        ('{"type": "subscribe", "format": "v2", "velocity": true}', ErrorCode.MALFORMED_FRAME),
        ('{"type": "resume", "epoch": 1}', ErrorCode.MALFORMED_FRAME),
        ('{"type": "set_sssp_source"}', ErrorCode.MALFORMED_FRAME),
        ('{"type": "ping", "id": [1]}', ErrorCode.MALFORMED_FRAME),
        ("[" * 100_000 + "]" * 100_000, ErrorCode.TOO_LARGE),
        ("[" * 20_000 + "]" * 20_000, ErrorCode.MALFORMED_FRAME),
    ],
)
def test_bad_client_messages(text: str, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        control.parse_client_message(text)
    assert info.value.code == code
    assert info.value.info.to_json()["code"] == code.value


def test_the_control_limit_counts_utf8_bytes() -> None:
    def ping(pad: str) -> str:
        return json.dumps({"type": "ping", "timestamp": 1, "note": pad}, ensure_ascii=False)

    frame = ping("")
    room = control.MAX_TEXT - len(frame.encode())
    assert isinstance(control.parse_client_message(ping("x" * room)), control.Ping)  # the limit
    # two-byte characters: under the limit in characters, over it in bytes
    wide = ping("é" * (room // 2 + 1))
    assert len(wide) < control.MAX_TEXT < len(wide.encode())
    with pytest.raises(ProtocolError) as info:
        control.parse_client_message(wide)
    assert info.value.code == ErrorCode.TOO_LARGE
    assert isinstance(control.parse_client_message(ping("é" * (room // 2))), control.Ping)


def test_message_id_is_recovered_from_invalid_messages() -> None:
    assert control.message_id_of('{"type": "subscribe", "format": "v9", "id": "a1"}') == "a1"
    assert control.message_id_of("garbage") is None


# -- compression ------------------------------------------------------------------------------

def test_inflate_is_capped() -> None:
    bomb = gzip.compress(b"\0" * (11 * 1024 * 1024))
    with pytest.raises(ProtocolError) as info:
        gunzip_bounded(bomb)
    assert info.value.code == ErrorCode.TOO_LARGE
    exact = gzip.compress(b"\0" * 1000)
    assert len(gunzip_bounded(exact, 1000)) == 1000
    with pytest.raises(ProtocolError) as info:
        gunzip_bounded(exact, 999)
    assert info.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError) as info:
        gunzip_bounded(exact[:-3])
    assert info.value.code == ErrorCode.MALFORMED_FRAME
    with pytest.raises(ProtocolError):
        gunzip_bounded(exact + b"junk")


def test_settings_bomb_is_too_large() -> None:
    raw = bytes([0x10, 0xFF]) + gzip.compress(b"\x08" + b"\0" * (11 * 1024 * 1024))
    with pytest.raises(ProtocolError) as info:
        sc.decode_settings(raw)
    assert info.value.code == ErrorCode.TOO_LARGE


# -- random and mutated bytes -----------------------------------------------------------------

def _q_frames() -> list[bytes]:
    rng = np.random.default_rng(1)
    enc = QStreamEncoder(velocity=True)
    ids = np.arange(300, dtype=np.uint32)
    pos = rng.normal(0, 100, (300, 3))
    out = []
    for s in range(1, 6):
        pos = pos + rng.normal(0, 0.5 * s, (300, 3)) * (rng.random((300, 1)) < 0.3)
        o = enc.encode(s, ids, pos.astype(np.float32), epoch=1,
                       vel=rng.normal(0, 1, (300, 3)).astype(np.float32))
        out += [o.frame, o.full_keyframe()]
    return out


def _decode_q_stateful(raw: bytes) -> Any:
    dec = QDecoder()
    dec.apply(SEEDS_Q[1])
    return dec.apply(raw)


SEEDS_Q = _q_frames()
nodes4 = NodeRecords.build([1, 2, 3, 70000], np.ones((4, 3)), agent=[1, 0, 0, 1])
nodes4v1 = NodeRecords.build([1, 2, 3, 7], np.ones((4, 3)))
DECODERS: list[tuple[str, Callable[[bytes], Any], list[bytes]]] = [
    ("v1", decode_v1, [encode_v1(nodes4v1, seq=1, epoch=1)]),
    ("v2", decode_v2, [encode_v2(nodes4, seq=1, epoch=1, flags=2)]),
    ("q", decode_q, SEEDS_Q),
    ("q-stateful", _decode_q_stateful, SEEDS_Q),
    ("sssp", decode_sssp, [
        encode_sssp(2, np.arange(100, dtype=np.float32), np.arange(100), seq=4, epoch=1),
        encode_sssp(None, np.full(4, np.inf), np.full(4, -1), seq=4, epoch=1),
    ]),
    ("client", decode_client_positions, [
        encode_client_positions([1, 2], [[1, 2, 3], [4, 5, 6]], batch=3, epoch=1, pin=True)]),
    ("settings", sc.decode_settings, [
        sc.encode_settings(m) for m in (
            sc.BatchSet(1, sc.entries([(1, 0.5), (2, [1, "x", {"a": None}])])),
            sc.Snapshot(2, 3, b"\1" * 32, sc.entries([(i, "v" * 40) for i in range(20)])),
            sc.PathTable((sc.PathEntry(1, sc.Tag.F64, "a.b.c"),)),
            sc.Error(1, 2, "bad"),
        )
    ]),
    ("control", control.parse_client_message, [
        b'{"type":"subscribe","format":"q","intervalMs":100,"velocity":true,"id":"x"}',
        b'{"type":"resume","epoch":1,"seq":2,"settingsRevision":3}',
    ]),
    ("kind", frame_kind, [b"\x02", b"\x10"]),
]


# The flag bits each kind defines (§2.2: the others are 0); a frame with any other bit set is
# malformed, whatever the kind.
DEFINED_FLAGS = [("v1", 0x06), ("v2", 0x06), ("q", 0x3F), ("sssp", 0x05), ("client", 0x07)]


@pytest.mark.parametrize(("name", "defined"), DEFINED_FLAGS, ids=[d[0] for d in DEFINED_FLAGS])
def test_undefined_flag_bits_are_malformed(name: str, defined: int) -> None:
    decode, seeds = next((d[1], d[2]) for d in DECODERS if d[0] == name)
    raw = seeds[0]
    decode(raw)  # the seed itself is valid
    undefined = [bit for bit in (1 << b for b in range(8)) if not bit & defined]
    assert undefined
    for bit in undefined:
        with pytest.raises(ProtocolError) as info:
            decode(raw[:1] + bytes([raw[1] | bit]) + raw[2:])
        assert info.value.code == ErrorCode.MALFORMED_FRAME, hex(bit)
        assert bit == 0x01 or f"0x{bit:02x}" in str(info.value)  # 0x01: "never compressed"


def _only_protocol_errors(decode: Callable[[bytes], Any], raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(raw)


@pytest.mark.parametrize(("name", "decode", "seeds"), DECODERS, ids=[d[0] for d in DECODERS])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_bytes_raise_only_protocol_errors(
    name: str, decode: Callable[[bytes], Any], seeds: list[bytes], data: st.DataObject
) -> None:
    raw = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
        if op == "flip" and raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "truncate":
            del raw[data.draw(st.integers(0, len(raw))):]
        elif op == "extend":
            raw += data.draw(st.binary(min_size=1, max_size=16))
        elif op == "splice" and len(raw) > 4:
            i = data.draw(st.integers(0, len(raw) - 4))
            raw[i : i + 4] = struct.pack("<I", data.draw(st.sampled_from(
                [0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])))
    _only_protocol_errors(decode, bytes(raw))


@pytest.mark.parametrize(("name", "decode", "seeds"), DECODERS, ids=[d[0] for d in DECODERS])
@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200), first=st.sampled_from([0x01, 0x02, 0x03, 0x05, 0x10, 0x20]))
def test_random_bytes_raise_only_protocol_errors(
    name: str, decode: Callable[[bytes], Any], seeds: list[bytes], raw: bytes, first: int
) -> None:
    _only_protocol_errors(decode, raw)
    _only_protocol_errors(decode, bytes([first]) + raw)


@FAST
@given(values=st.lists(st.integers(0, 2**32 - 1), max_size=200))
def test_varints_roundtrip(values: list[int]) -> None:
    from graphwire.protocol.varint import decode_varints, encode_varints, unzigzag, zigzag

    raw = encode_varints(np.array(values, np.int64))
    assert decode_varints(raw, len(values), "test").tolist() == values
    signed = np.array([v - 2**31 for v in values], np.int64)
    assert unzigzag(zigzag(signed)).tolist() == signed.tolist()
