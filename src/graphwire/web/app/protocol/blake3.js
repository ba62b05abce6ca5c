/**
 * BLAKE3 (32-byte hash, default mode), written from the BLAKE3 specification, for the settings
 * digest check of docs/protocol.md §5: the Snapshot digest and `connection_established.settings.digest`
 * are blake3 over `u32 pathId | value` for every path in ascending id. Browsers have no native
 * blake3; the inputs are a few kilobytes, so a plain implementation is fast enough.
 * @module protocol/blake3
 */

const IV = new Uint32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;
const BLOCK = 64;
const CHUNK = 1024;

function g(s, a, b, c, d, x, y) {
  s[a] = (s[a] + s[b] + x) | 0;
  s[d] ^= s[a]; s[d] = (s[d] >>> 16) | (s[d] << 16);
  s[c] = (s[c] + s[d]) | 0;
  s[b] ^= s[c]; s[b] = (s[b] >>> 12) | (s[b] << 20);
  s[a] = (s[a] + s[b] + y) | 0;
  s[d] ^= s[a]; s[d] = (s[d] >>> 8) | (s[d] << 24);
  s[c] = (s[c] + s[d]) | 0;
  s[b] ^= s[c]; s[b] = (s[b] >>> 7) | (s[b] << 25);
}

/** The compression function: 16 output words. */
function compress(cv, block, counter, blockLen, flags) {
  const s = new Uint32Array(16);
  s.set(cv, 0);
  s.set(IV.subarray(0, 4), 8);
  s[12] = counter >>> 0;
  s[13] = Math.floor(counter / 2 ** 32) >>> 0;
  s[14] = blockLen;
  s[15] = flags;
  let m = Uint32Array.from(block);
  for (let round = 0; round < 7; round++) {
    g(s, 0, 4, 8, 12, m[0], m[1]);
    g(s, 1, 5, 9, 13, m[2], m[3]);
    g(s, 2, 6, 10, 14, m[4], m[5]);
    g(s, 3, 7, 11, 15, m[6], m[7]);
    g(s, 0, 5, 10, 15, m[8], m[9]);
    g(s, 1, 6, 11, 12, m[10], m[11]);
    g(s, 2, 7, 8, 13, m[12], m[13]);
    g(s, 3, 4, 9, 14, m[14], m[15]);
    if (round < 6) m = Uint32Array.from(PERMUTATION, (i) => m[i]);
  }
  for (let i = 0; i < 8; i++) {
    s[i] ^= s[i + 8];
    s[i + 8] ^= cv[i];
  }
  return s;
}

function words(bytes, start, len) {
  const w = new Uint32Array(16);
  for (let i = 0; i < len; i++) w[i >> 2] |= bytes[start + i] << (8 * (i & 3));
  return w;
}

/** The chunk's final block input, as an output node (not yet compressed). */
function chunkOutput(data, start, end, counter) {
  let cv = IV;
  const len = end - start;
  const blocks = Math.max(1, Math.ceil(len / BLOCK));
  for (let b = 0; b < blocks - 1; b++) {
    const flags = b === 0 ? CHUNK_START : 0;
    cv = compress(cv, words(data, start + BLOCK * b, BLOCK), counter, BLOCK, flags).subarray(0, 8);
  }
  const lastStart = start + BLOCK * (blocks - 1);
  const lastLen = end - lastStart;
  const flags = (blocks === 1 ? CHUNK_START : 0) | CHUNK_END;
  return { cv, block: words(data, lastStart, lastLen), counter, blockLen: lastLen, flags };
}

function parentOutput(left, right) {
  const block = new Uint32Array(16);
  block.set(left, 0);
  block.set(right, 8);
  return { cv: IV, block, counter: 0, blockLen: BLOCK, flags: PARENT };
}

function chainingValue(node) {
  return compress(node.cv, node.block, node.counter, node.blockLen, node.flags).subarray(0, 8);
}

/**
 * BLAKE3 of `data`, 32 bytes.
 * @param {Uint8Array} data
 * @returns {Uint8Array}
 */
export function blake3(data) {
  const chunks = Math.max(1, Math.ceil(data.length / CHUNK));
  const stack = [];
  let node = null;
  for (let c = 0; c < chunks; c++) {
    const start = CHUNK * c;
    node = chunkOutput(data, start, Math.min(data.length, start + CHUNK), c);
    if (c === chunks - 1) break;
    // Merge completed subtrees: as many as trailing zero bits of the new total chunk count.
    let cv = chainingValue(node);
    let total = c + 1;
    while ((total & 1) === 0) {
      cv = chainingValue(parentOutput(stack.pop(), cv));
      total >>= 1;
    }
    stack.push(cv);
  }
  while (stack.length) node = parentOutput(stack.pop(), chainingValue(node));
  const out = compress(node.cv, node.block, node.counter, node.blockLen, node.flags | ROOT);
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = (out[i >> 2] >>> (8 * (i & 3))) & 0xff;
  return bytes;
}

/** Lower-case hex of bytes. */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
