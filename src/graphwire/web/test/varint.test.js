// Varints (docs/protocol.md §4.4): the reader's short path (one and two bytes) and long path
// (three to five) agree with the writer over the whole 32-bit range, and every malformed stream
// (cut short, bytes left over, longer than 5 bytes or 32 bits) is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readVarints, readZigzagVarints, writeVarint, zigzag } from '../app/protocol/varint.js';

// values at every byte-length boundary, both signs, and the int32 extremes
const SIGNED = [0, -1, 1, 63, -64, 64, -65, 8191, -8192, 8192, -8193, 2 ** 20, -(2 ** 20),
  2 ** 27 - 1, -(2 ** 27), 2 ** 27, 2 ** 30, -(2 ** 30), 2 ** 31 - 1, -(2 ** 31)];
const UNSIGNED = [0, 1, 127, 128, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28,
  2 ** 31, 2 ** 32 - 1];

function encode(values, map = (v) => v) {
  const out = [];
  for (const v of values) writeVarint(out, map(v));
  return Uint8Array.from(out);
}

test('signed values round-trip through zigzag varints of 1 to 5 bytes', () => {
  const bytes = encode(SIGNED, zigzag);
  const out = new Int32Array(SIGNED.length);
  readZigzagVarints(bytes, 0, bytes.length, SIGNED.length, out, 'signed');
  assert.deepEqual([...out], SIGNED);
});

test('unsigned values up to 2^32 - 1 round-trip into a Uint32Array', () => {
  const bytes = encode(UNSIGNED);
  const out = new Uint32Array(UNSIGNED.length);
  readVarints(bytes, 0, bytes.length, UNSIGNED.length, out, 'unsigned');
  assert.deepEqual([...out], UNSIGNED);
});

test('a window inside a larger buffer is read exactly, its neighbours untouched', () => {
  const inner = encode([5, -300, 70000], zigzag);
  const bytes = Uint8Array.from([0xff, 0xff, ...inner, 0xff]);
  const out = new Int32Array(3);
  readZigzagVarints(bytes, 2, 2 + inner.length, 3, out, 'window');
  assert.deepEqual([...out], [5, -300, 70000]);
});

test('many random values, mostly short, decode as written', () => {
  let seed = 7;
  const rand = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed; };
  const values = Array.from({ length: 5000 }, () => {
    const r = rand();
    const bits = [6, 6, 6, 13, 13, 20, 27, 31][r % 8];
    const v = rand() % 2 ** bits;
    return r % 3 ? v : -v - 1;
  });
  const bytes = encode(values, zigzag);
  const out = new Int32Array(values.length);
  readZigzagVarints(bytes, 0, bytes.length, values.length, out, 'random');
  assert.deepEqual([...out], values);
});

const refuses = (bytes, count, pattern) => assert.throws(
  () => readZigzagVarints(bytes, 0, bytes.length, count, new Int32Array(count), 'moves'),
  (err) => err.code === 'malformed_frame' && pattern.test(err.message),
);

test('a stream cut inside its last varint is refused, on the short and the long path', () => {
  refuses(Uint8Array.from([0x01, 0x81]), 2, /ends inside a varint/);
  refuses(Uint8Array.from([0x01, 0x81, 0x82]), 2, /ends inside a varint/);
  refuses(Uint8Array.from([0x81, 0x81, 0x81]), 1, /ends inside a varint/);
});

test('bytes left after the last value are refused', () => {
  refuses(Uint8Array.from([0x01, 0x02, 0x03]), 2, /bytes left/);
});

test('a varint of more than 5 bytes or 32 bits is refused', () => {
  refuses(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x10]), 1, /longer than 5 bytes/);
  refuses(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), 2, /longer than 5 bytes/);
});

test('a byte count that cannot hold the values is refused before reading', () => {
  refuses(Uint8Array.from([0x01]), 2, /cannot hold exactly 2/);
  refuses(new Uint8Array(11), 2, /cannot hold exactly 2/);
});
