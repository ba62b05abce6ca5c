/**
 * Zigzag LEB128 varints (docs/protocol.md §4.4): 7 bits a byte, low group first, high bit set
 * when more follow, at most 5 bytes and 32 bits. Zigzag maps 0, -1, 1, -2 to 0, 1, 2, 3.
 * @module protocol/varint
 */
import { malformed } from './errors.js';

function read(bytes, start, end, count, out, what, zigzag) {
  const size = end - start;
  if (size < count || size > 5 * count) throw malformed(`${what}: ${size} bytes cannot hold exactly ${count} varints`);
  let o = start;
  // Values of one or two bytes (nearly all of them in position frames) take the short path;
  // reads past `end` are caught once, after the loop: each value takes at most 5 bytes, so the
  // loop ends, and a stream that overran (or stopped short) is refused whole.
  for (let k = 0; k < count; k++) {
    let value = bytes[o++];
    if (value >= 0x80) {
      const b1 = bytes[o++];
      value = (value & 0x7f) | ((b1 & 0x7f) << 7);
      if (b1 >= 0x80) {
        value = readLong(bytes, o - 2, end, what);
        o = varintEnd(bytes, o);
      }
    }
    // zigzag (1): 0, 1, 2, 3 → 0, -1, 1, -2; plain (0): the value as an int32, which a
    // Uint32Array stores back unsigned. Branch-free: the same code for both.
    out[k] = (value >>> zigzag) ^ -(value & zigzag);
  }
  if (o !== end) {
    throw malformed(o > end ? `${what}: the data ends inside a varint or before the last value`
      : `${what}: has bytes left after the last value`);
  }
}

/** The value of the varint at `o` (3 to 5 bytes; bytes 1-4 hold 28 bits, a fifth the top 4). */
function readLong(bytes, o, end, what) {
  let value = 0;
  let b = 0x80;
  for (let shift = 0; b >= 0x80; shift += 7) {
    if (o >= end) throw malformed(`${what}: the data ends inside a varint or before the last value`);
    b = bytes[o++];
    if (shift === 28) {
      if (b > 0x0f) throw malformed(`${what}: has a varint longer than 5 bytes or 32 bits`);
      return (value >>> 0) + b * 0x10000000;
    }
    value |= (b & 0x7f) << shift;
  }
  return value;
}

/** Where the varint whose third byte is at `o` ends (readLong has checked it). */
function varintEnd(bytes, o) {
  while (bytes[o++] >= 0x80);
  return o;
}

/**
 * Read exactly `count` varints that fill `bytes[start, end)` completely, as zigzag-decoded
 * signed integers into `out` (an Int32Array of at least `count`).
 */
export function readZigzagVarints(bytes, start, end, count, out, what) {
  read(bytes, start, end, count, out, what, 1);
}

/** Read exactly `count` unsigned varints filling `bytes[start, end)` into `out` (a Uint32Array). */
export function readVarints(bytes, start, end, count, out, what) {
  read(bytes, start, end, count, out, what, 0);
}

/** Append the varint of `z` (0 ≤ z < 2^32) to the array of bytes `out`. */
export function writeVarint(out, z) {
  while (z >= 0x80) {
    out.push((z % 128) | 0x80);
    z = Math.floor(z / 128);
  }
  out.push(z);
}

/** Zigzag of a signed int32. */
export function zigzag(v) {
  return v >= 0 ? 2 * v : -2 * v - 1;
}
