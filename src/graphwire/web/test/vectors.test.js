// Every golden vector of the wire contract decodes byte-exact through the JS modules, and the
// settings and client-position vectors also encode byte-exact (docs/protocol.md §4.7, §4.8, §5).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { decodeV1, decodeV2, encodeV1, encodeV2 } from '../app/protocol/positions.js';
import { decodeClientPositions, encodeClientPositions } from '../app/protocol/client_positions.js';
import {
  Tag, decodeBody, decodeSettings, decodeValue, encodeBody, encodeSettings, encodeValue, settingsBody,
} from '../app/protocol/settings_codec.js';

const VECTORS = new URL('../../../../tests/data/vectors/', import.meta.url);
const load = (name) => JSON.parse(readFileSync(new URL(name, VECTORS), 'utf8'));
const fromHex = (hex) => Uint8Array.from(hex.match(/../g) || [], (h) => parseInt(h, 16));
const toHex = (bytes) => Buffer.from(bytes).toString('hex');
const num = (v) => (v === 'inf' ? Infinity : v);

const positions = load('positions.json').cases;
const settings = load('settings.json');
const client = load('client_positions.json').cases;

function recordsOf(c) {
  const n = c.nodes.length;
  const out = {
    ids: new Uint32Array(n), agent: new Uint8Array(n), pos: new Float32Array(3 * n),
    vel: new Float32Array(3 * n), dist: new Float32Array(n), parent: new Int32Array(n),
  };
  c.nodes.forEach((node, i) => {
    out.ids[i] = node.id;
    out.agent[i] = node.type === 'agent' ? 1 : 0;
    out.pos.set([node.x, node.y, node.z], 3 * i);
    out.vel.set([node.vx, node.vy, node.vz], 3 * i);
    out.dist[i] = num(node.ssspDistance);
    out.parent[i] = node.ssspParent;
  });
  return out;
}

for (const c of positions) {
  test(`position vector decodes: ${c.name}`, () => {
    const bytes = fromHex(c.hex);
    const frame = (c.kind === 1 ? decodeV1 : decodeV2)(bytes);
    assert.deepEqual(frame.header, { kind: c.kind, flags: c.flags, epoch16: c.epochLow16, seq: c.seq });
    assert.deepEqual(frame.nodes, recordsOf(c));
  });

  test(`position vector decodes at an unaligned offset: ${c.name}`, () => {
    const padded = new Uint8Array(c.hex.length / 2 + 1);
    padded.set(fromHex(c.hex), 1);
    const frame = (c.kind === 1 ? decodeV1 : decodeV2)(padded.subarray(1));
    assert.deepEqual(frame.nodes, recordsOf(c));
  });

  test(`position vector encodes byte-exact: ${c.name}`, () => {
    const out = (c.kind === 1 ? encodeV1 : encodeV2)(recordsOf(c), { seq: c.seq, epoch: c.epochLow16, flags: c.flags });
    assert.equal(toHex(out), c.hex);
  });
}

test('a truncated or mixed-type V2 record is malformed', () => {
  const bytes = fromHex(positions[1].hex);
  assert.throws(() => decodeV2(bytes.subarray(0, bytes.length - 1)), { code: 'malformed_frame' });
  const both = bytes.slice();
  both[8 + 3] |= 0xc0; // agent and knowledge bits both set on the first record
  assert.throws(() => decodeV2(both), { code: 'malformed_frame' });
});

for (const c of client) {
  test(`client positions vector: ${c.name}`, () => {
    const ids = c.items.map((i) => i[0]);
    const pos = c.items.flatMap((i) => i.slice(1));
    const out = encodeClientPositions(ids, pos, { batch: c.batch, epoch: 0xabcd, pin: c.pin });
    assert.equal(toHex(out), c.hex);
    const back = decodeClientPositions(fromHex(c.hex));
    assert.equal(back.batch, c.batch);
    assert.equal(back.pin, c.pin);
    assert.equal(back.release, false);
    assert.deepEqual([...back.ids], ids);
    assert.deepEqual([...back.pos], pos);
  });
}

function typed(c) {
  const tag = Tag[c.tag.toUpperCase()];
  const of = (v) => {
    if (v === null) return { tag: Tag.NULL, value: null };
    if (typeof v === 'boolean') return { tag: Tag.BOOL, value: v };
    if (typeof v === 'string') return { tag: Tag.STRING, value: v };
    if (Array.isArray(v)) return { tag: Tag.ARRAY, value: v.map(of) };
    if (typeof v === 'object') return { tag: Tag.OBJECT, value: Object.entries(v).map(([k, x]) => [k, of(x)]) };
    return Number.isInteger(v) ? { tag: Tag.I32, value: v } : { tag: Tag.F64, value: v };
  };
  if (tag === Tag.BYTES) return { tag, value: fromHex(c.value) };
  if (tag === Tag.ARRAY || tag === Tag.OBJECT) return of(c.value);
  return { tag, value: c.value };
}

for (const c of settings.values) {
  test(`settings value vector ${c.tag} ${c.hex}`, () => {
    const v = typed(c);
    assert.equal(toHex(encodeValue(v)), c.hex);
    const back = decodeValue(fromHex(c.hex));
    assert.deepEqual(back, v);
    assert.equal(toHex(encodeValue(back)), c.hex);
  });
}

for (const c of settings.messages) {
  test(`settings message vector: ${c.name}`, async () => {
    const raw = fromHex(c.hex);
    const msg = await decodeSettings(raw);
    const plain = c.compressed ? gunzipSync(raw.subarray(2)) : raw.subarray(2);
    assert.equal(toHex(encodeBody(msg)), toHex(plain));
    const again = await encodeSettings(msg);
    assert.equal(again[1], c.compressed ? 0xff : 0x00);
    assert.equal(toHex(await settingsBody(again)), toHex(plain));
    if (!c.compressed) assert.equal(toHex(again), c.hex);
  });
}

test('settings message vectors hold what their names say', async () => {
  const by = Object.fromEntries(settings.messages.map((c) => [c.name, fromHex(c.hex)]));
  assert.deepEqual(await decodeSettings(by['Get req 7 path 1']), { type: 'Get', req: 7, pathId: 1 });
  assert.deepEqual(await decodeSettings(by['Set req 8 path 2 (spring_k) to 0.07 as F64']),
    { type: 'Set', req: 8, pathId: 2, value: { tag: Tag.F64, value: 0.07 } });
  assert.deepEqual(await decodeSettings(by['Set req 9 path 9 (enabled) to false']),
    { type: 'Set', req: 9, pathId: 9, value: { tag: Tag.BOOL, value: false } });
  assert.deepEqual(await decodeSettings(by['BatchGet req 10 paths 1..9']),
    { type: 'BatchGet', req: 10, pathIds: [1, 2, 3, 4, 5, 6, 7, 8, 9] });
  assert.deepEqual(await decodeSettings(by['BatchSet req 11: damping 0.9, iterations 200']),
    { type: 'BatchSet', req: 11, entries: [[1, { tag: Tag.F64, value: 0.9 }], [8, { tag: Tag.I32, value: 200 }]] });
  assert.deepEqual(await decodeSettings(by['Sync req 12 since revision 41']), { type: 'Sync', req: 12, sinceRevision: 41 });
  assert.deepEqual(await decodeSettings(by['Ping 1700000000000']), { type: 'Ping', timestampMs: 1700000000000 });
  assert.deepEqual(await decodeSettings(by['Delta revision 42: damping 0.9, repel_k 75']),
    { type: 'Delta', revision: 42, entries: [[1, { tag: Tag.F64, value: 0.9 }], [3, { tag: Tag.I32, value: 75 }]] });
  assert.deepEqual(await decodeSettings(by['Response req 8 revision 43: spring_k 0.07']),
    { type: 'Response', req: 8, revision: 43, entries: [[2, { tag: Tag.F64, value: 0.07 }]] });
  assert.deepEqual(await decodeSettings(by['Error req 9 code 2 type_mismatch']),
    { type: 'Error', req: 9, code: 2, message: 'type mismatch' });
  const big = await decodeSettings(by['BatchSet req 13 with a long string: body over 256 bytes, sent gzip-compressed']);
  assert.equal(big.type, 'BatchSet');
  assert.equal(big.req, 13);
  assert.ok(big.entries.reduce((s, [, v]) => s + encodeValue(v).length, 0) > 256);
});

test('malformed settings input is refused with a code', async () => {
  assert.throws(() => decodeBody(fromHex('0107000000')), { code: 'malformed_frame' }); // Get cut short
  assert.throws(() => decodeBody(fromHex('2a')), { code: 'unknown_message' });
  assert.throws(() => decodeValue(fromHex('0602000000c328')), { code: 'malformed_frame' }); // bad utf-8
  assert.throws(() => decodeValue(fromHex('0102')), { code: 'malformed_frame' }); // bool byte 2
  assert.throws(() => decodeValue(fromHex('08ffffffff')), { code: 'malformed_frame' }); // count past the end
  const deep = '0801000000'.repeat(34) + '00';
  assert.throws(() => decodeValue(fromHex(deep)), { code: 'malformed_frame' });
  await assert.rejects(decodeSettings(fromHex('1005')), { code: 'malformed_frame' });
});
