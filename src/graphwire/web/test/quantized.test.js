// POSITIONS_Q (kind 0x03): the worked example of docs/protocol.md §4.6, byte for byte, and the
// decoder's refusals. The stream tests against the Python encoder run from pytest
// (tests/web/test_js_protocol.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QDecoder, decodeQ, predict } from '../app/protocol/quantized.js';

const fromHex = (hex) => Uint8Array.from(hex.replace(/\s+/g, '').match(/../g), (h) => parseInt(h, 16));

const KEYFRAME = fromHex(`
03 02 0200 64000000
0000000000000000 00000000000014c0 00000000000000c0
4ee24de24d62503f 140014001400243f 100010001000103f
00000000 00000000 00000000
02 000000
04000000 02000000
00000000 03000000 05000000 01000000
00 10 ff e8 00 27 ff 03
00 00 ff 99 80 00 ff 99
00 ff 00 ff 80 ff 00 bf`);
const DELTA = fromHex(`
03 00 0200 65000000
64000000 04000000 02000000
01 00 000000 00
01000000 07000000
0a
06 00
00 8401
41 00`);

test('the worked keyframe of docs/protocol.md decodes', async () => {
  assert.equal(KEYFRAME.length, 120);
  const d = new QDecoder();
  await d.apply(KEYFRAME);
  assert.deepEqual([...d.ids], [0, 1, 2, 5]);
  assert.deepEqual([...d.q], [0, 32768, 32768, 10000, 0, 65535, 65535, 65535, 0, 1000, 39321, 49151]);
  const want = [[0, 0, 0], [10, -5, 2], [65.535, 5, -2], [1, 1, 1]];
  const pos = d.positions();
  want.flat().forEach((v, i) => {
    const step = [d.step[0], d.step[1], d.step[2]][i % 3];
    assert.ok(Math.abs(pos[i] - v) <= step / 2 + 1e-5, `coordinate ${i}: ${pos[i]} vs ${v}`);
  });
  assert.equal(d.keySeq, 100);
});

test('the worked delta applies to it', async () => {
  assert.equal(DELTA.length, 42);
  const d = new QDecoder();
  await d.apply(KEYFRAME);
  await d.apply(DELTA);
  assert.deepEqual([...d.q], [0, 32768, 32768, 10003, 0, 65502, 65535, 65535, 0, 1000, 39387, 49151]);
  assert.equal(d.seq, 101);
  assert.equal(d.keySeq, 100);
});

test('a delta for a keyframe not held is refused as KeyframeMissingError', async () => {
  const d = new QDecoder();
  await assert.rejects(d.apply(DELTA), { name: 'KeyframeMissingError', needed: 100 });
});

test('truncated and inconsistent frames are malformed', async () => {
  await assert.rejects(decodeQ(KEYFRAME.subarray(0, 119)), { code: 'malformed_frame' });
  const rebaseOnly = DELTA.slice();
  rebaseOnly[1] = 0x10;
  await assert.rejects(decodeQ(rebaseOnly), { code: 'malformed_frame' });
  const badBitmap = DELTA.slice();
  badBitmap[34] = 0x0b; // three bits set, header says two
  await assert.rejects(decodeQ(badBitmap), { code: 'malformed_frame' });
});

test('prediction floors towards -infinity with exact integer division', () => {
  const base = Int32Array.from([0, 0, 0, 10, 10, 10]);
  const motion = Int32Array.from([-7, 7, 0, 3, -3, 1]);
  assert.deepEqual([...predict(base, motion, 4, 2)], [-4, 3, 0, 11, 8, 10]);
  assert.deepEqual([...predict(base, motion, 4, 100)], [-28, 28, 0, 22, -2, 14]); // h capped at 16
  assert.equal(predict(base, null, 4, 2), base);
});

/** The worked delta with value coding 2 and the given factor per axis (12 bytes after the fixed part). */
function fittedDelta(factor) {
  const out = new Uint8Array(DELTA.length + 12);
  out.set(DELTA.subarray(0, 34));
  out[8 + 13] = 2;
  const dv = new DataView(out.buffer);
  factor.forEach((f, a) => dv.setFloat32(34 + 4 * a, f, true));
  out.set(DELTA.subarray(34), 46);
  return out;
}

test('value coding 2 carries a factor per axis after the fixed part', async () => {
  const frame = await decodeQ(fittedDelta([0.5, 1, 2]));
  assert.equal(frame.valueCoding, 2);
  assert.deepEqual(frame.factor, [0.5, 1, 2]);
  assert.deepEqual([...frame.idx], [1, 3]);
  // a keyframe without motion predicts itself, whatever the factor: the worked delta's result
  const d = new QDecoder();
  await d.apply(KEYFRAME);
  await d.apply(fittedDelta([0.5, 1, 2]));
  assert.deepEqual([...d.q], [0, 32768, 32768, 10003, 0, 65502, 65535, 65535, 0, 1000, 39387, 49151]);
});

test('a factor that is not finite or past ±1024 is malformed', async () => {
  for (const bad of [NaN, Infinity, 1025, -2000]) {
    await assert.rejects(decodeQ(fittedDelta([0.5, bad, 2])), { code: 'malformed_frame' });
  }
  await assert.rejects(decodeQ(fittedDelta([0.5, 1, 2]).subarray(0, 40)), { code: 'malformed_frame' });
});
