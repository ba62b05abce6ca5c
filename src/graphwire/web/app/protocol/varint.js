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
  for (let k = 0; k < count; k++) {
    // bytes 1-4 hold 28 bits: integer arithmetic; a fifth byte adds the top 4 bits of 32
    let value = 0;
    let b = 0x80;
    for (let shift = 0; b >= 0x80; shift += 7) {
      if (o >= end) throw malformed(`${what}: the data ends inside a varint or before the last value`);
      b = bytes[o++];
      if (shift === 28) {
        if (b > 0x0f) throw malformed(`${what}: has a varint longer than 5 bytes or 32 bits`);
        value = (value >>> 0) + b * 0x10000000;
        break;
      }
      value |= (b & 0x7f) << shift;
    }
    // zigzag: 0, 1, 2, 3 → 0, -1, 1, -2 (the low bits of a value up to 2^32 - 1 are exact)
    out[k] = zigzag ? (value >>> 1) ^ -(value & 1) : value;
  }
  if (o !== end) throw malformed(`${what}: has bytes left after the last value`);
}

/**
 * Read exactly `count` varints that fill `bytes[start, end)` completely, as zigzag-decoded
 * signed integers into `out` (an Int32Array or Float64Array of at least `count`).
 */
export function readZigzagVarints(bytes, start, end, count, out, what) {
  read(bytes, start, end, count, out, what, true);
}

/** Read exactly `count` unsigned varints filling `bytes[start, end)`. */
export function readVarints(bytes, start, end, count, out, what) {
  read(bytes, start, end, count, out, what, false);
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
