/**
 * The binary settings protocol, kind 0x10 (docs/protocol.md §5): typed values and twelve messages.
 *
 * Frame `0x10 | c | body`, `c` = 0x00 plain or 0xFF gzip of the plain body (senders compress a
 * body over 256 bytes when gzip makes it smaller). Values are `{tag, value}`: Null `null`,
 * Bool `boolean`, I32/F32/F64 `number`, I64 `number` (a `bigint` beyond 2^53), String `string`,
 * Bytes `Uint8Array`, Array `Value[]`, Object `[key, Value][]` (order kept). Decoding checks
 * every length against the bytes present before allocating, limits nesting to 32 and rejects
 * bad utf-8 and trailing bytes. Messages are plain objects `{type: 'Set', req, pathId, value}`.
 * @module protocol/settings_codec
 */
import { ProtocolError, malformed } from './errors.js';
import { blake3 } from './blake3.js';
import { gunzip, gzip, maybeGzip } from './gzip.js';

export const SETTINGS_KIND = 0x10;
export const PLAIN = 0x00;
export const GZIP = 0xff;
export const MAX_DEPTH = 32;

/** Value tags (§5). */
export const Tag = Object.freeze({
  NULL: 0x00, BOOL: 0x01, I32: 0x02, I64: 0x03, F32: 0x04, F64: 0x05,
  STRING: 0x06, BYTES: 0x07, ARRAY: 0x08, OBJECT: 0x09,
});

/** Error codes of the Error message (§5). */
export const SettingsErrorCode = Object.freeze({
  UNKNOWN_PATH: 1, TYPE_MISMATCH: 2, INVALID_VALUE: 3, MALFORMED: 4, RATE_LIMITED: 5,
  FORBIDDEN: 6, INTERNAL: 7,
});

/** Message ids (§5). */
export const Message = Object.freeze({
  Get: 0x01, Set: 0x02, BatchGet: 0x03, BatchSet: 0x04, Delta: 0x05, Response: 0x06,
  Error: 0x07, Ping: 0x08, Pong: 0x09, PathTable: 0x0a, Sync: 0x0b, Snapshot: 0x0c,
});
const MESSAGE_NAMES = Object.fromEntries(Object.entries(Message).map(([k, v]) => [v, k]));

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A typed value. */
export function value(tag, data) {
  return { tag, value: data };
}

/** Growable little-endian byte writer. */
class Writer {
  constructor() {
    this.buf = new Uint8Array(64);
    this.dv = new DataView(this.buf.buffer);
    this.len = 0;
  }

  room(n) {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }

  u8(v) { this.room(1); this.dv.setUint8(this.len, v); this.len += 1; }
  u16(v) { this.room(2); this.dv.setUint16(this.len, v, true); this.len += 2; }
  u32(v) { this.room(4); this.dv.setUint32(this.len, v >>> 0, true); this.len += 4; }
  i32(v) { this.room(4); this.dv.setInt32(this.len, v, true); this.len += 4; }
  i64(v) { this.room(8); this.dv.setBigInt64(this.len, BigInt(v), true); this.len += 8; }
  u64(v) { this.room(8); this.dv.setBigUint64(this.len, BigInt(v), true); this.len += 8; }
  f32(v) { this.room(4); this.dv.setFloat32(this.len, v, true); this.len += 4; }
  f64(v) { this.room(8); this.dv.setFloat64(this.len, v, true); this.len += 8; }
  bytes(b) { this.room(b.length); this.buf.set(b, this.len); this.len += b.length; }
  done() { return this.buf.slice(0, this.len); }
}

function writeValue(w, v, depth) {
  if (depth > MAX_DEPTH) throw new RangeError(`value nests deeper than ${MAX_DEPTH} levels`);
  w.u8(v.tag);
  const d = v.value;
  switch (v.tag) {
    case Tag.NULL: return;
    case Tag.BOOL: w.u8(d ? 1 : 0); return;
    case Tag.I32: w.i32(d); return;
    case Tag.I64: w.i64(d); return;
    case Tag.F32: w.f32(d); return;
    case Tag.F64: w.f64(d); return;
    case Tag.STRING: { const raw = utf8.encode(d); w.u32(raw.length); w.bytes(raw); return; }
    case Tag.BYTES: w.u32(d.length); w.bytes(d); return;
    case Tag.ARRAY: w.u32(d.length); for (const item of d) writeValue(w, item, depth + 1); return;
    case Tag.OBJECT:
      w.u32(d.length);
      for (const [key, item] of d) {
        const raw = utf8.encode(key);
        w.u32(raw.length); w.bytes(raw);
        writeValue(w, item, depth + 1);
      }
      return;
    default: throw new RangeError(`unknown value tag ${v.tag}`);
  }
}

/** The bytes of one value: `u8 tag | data`. */
export function encodeValue(v) {
  const w = new Writer();
  writeValue(w, v, 0);
  return w.done();
}

/** Bounds-checked little-endian reader over one plain body. */
class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    this.pos = 0;
  }

  remaining() { return this.bytes.length - this.pos; }

  need(n, what) {
    if (n > this.remaining()) throw malformed(`${what}: needs ${n} bytes, ${this.remaining()} left`);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(what) { return this.dv.getUint8(this.need(1, what)); }
  u16(what) { return this.dv.getUint16(this.need(2, what), true); }
  u32(what) { return this.dv.getUint32(this.need(4, what), true); }
  i32(what) { return this.dv.getInt32(this.need(4, what), true); }
  f32(what) { return this.dv.getFloat32(this.need(4, what), true); }
  f64(what) { return this.dv.getFloat64(this.need(8, what), true); }
  i64(what) { return narrow(this.dv.getBigInt64(this.need(8, what), true)); }
  u64(what) { return narrow(this.dv.getBigUint64(this.need(8, what), true)); }
  take(n, what) { const at = this.need(n, what); return this.bytes.slice(at, at + n); }

  utf8(n, what) {
    const raw = this.take(n, what);
    try {
      return strictUtf8.decode(raw);
    } catch {
      throw malformed(`${what} is not valid utf-8`);
    }
  }

  count(minItem, what) {
    const n = this.u32(what);
    if (n * minItem > this.remaining()) throw malformed(`${what}: ${n} items cannot fit in ${this.remaining()} bytes`);
    return n;
  }

  end() {
    if (this.remaining()) throw malformed(`${this.remaining()} trailing bytes after the message`);
  }
}

function narrow(big) {
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

function readValue(r, depth) {
  if (depth > MAX_DEPTH) throw malformed(`value nests deeper than ${MAX_DEPTH} levels`);
  const tag = r.u8('value tag');
  switch (tag) {
    case Tag.NULL: return value(tag, null);
    case Tag.BOOL: {
      const b = r.u8('bool');
      if (b > 1) throw malformed(`bool byte ${b} is not 0 or 1`);
      return value(tag, b === 1);
    }
    case Tag.I32: return value(tag, r.i32('i32'));
    case Tag.I64: return value(tag, r.i64('i64'));
    case Tag.F32: return value(tag, r.f32('f32'));
    case Tag.F64: return value(tag, r.f64('f64'));
    case Tag.STRING: return value(tag, r.utf8(r.u32('string length'), 'string'));
    case Tag.BYTES: return value(tag, r.take(r.u32('bytes length'), 'bytes'));
    case Tag.ARRAY: {
      const n = r.count(1, 'array length');
      const items = [];
      for (let i = 0; i < n; i++) items.push(readValue(r, depth + 1));
      return value(tag, items);
    }
    case Tag.OBJECT: {
      const n = r.count(5, 'object length');
      const items = [];
      const seen = new Set();
      for (let i = 0; i < n; i++) {
        const key = r.utf8(r.u32('object key length'), 'object key');
        if (seen.has(key)) throw malformed(`object key ${JSON.stringify(key)} appears twice`);
        seen.add(key);
        items.push([key, readValue(r, depth + 1)]);
      }
      return value(tag, items);
    }
    default: throw malformed(`unknown value tag 0x${tag.toString(16).padStart(2, '0')}`);
  }
}

/** Decode exactly one value. */
export function decodeValue(bytes) {
  const r = new Reader(bytes);
  const v = readValue(r, 0);
  r.end();
  return v;
}

/** A value as plain JavaScript (arrays as arrays, objects as plain objects). */
export function toPlain(v) {
  if (v.tag === Tag.ARRAY) return v.value.map(toPlain);
  if (v.tag === Tag.OBJECT) return Object.fromEntries(v.value.map(([k, item]) => [k, toPlain(item)]));
  return v.value;
}

function writeEntries(w, entries) {
  w.u32(entries.length);
  for (const [pid, v] of entries) {
    w.u32(pid);
    writeValue(w, v, 0);
  }
}

function readEntries(r) {
  const n = r.count(5, 'entry count');
  const out = [];
  for (let i = 0; i < n; i++) out.push([r.u32('path id'), readValue(r, 0)]);
  return out;
}

/**
 * The plain body of a message (`u8 message | fields`).
 * @param {object} msg e.g. `{type: 'Set', req: 8, pathId: 2, value: {tag: Tag.F64, value: 0.07}}`
 * @returns {Uint8Array}
 */
export function encodeBody(msg) {
  const id = Message[msg.type];
  if (id === undefined) throw new RangeError(`unknown settings message ${msg.type}`);
  const w = new Writer();
  w.u8(id);
  switch (msg.type) {
    case 'Get': w.u32(msg.req); w.u32(msg.pathId); break;
    case 'Set': w.u32(msg.req); w.u32(msg.pathId); writeValue(w, msg.value, 0); break;
    case 'BatchGet': w.u32(msg.req); w.u32(msg.pathIds.length); for (const p of msg.pathIds) w.u32(p); break;
    case 'BatchSet': w.u32(msg.req); writeEntries(w, msg.entries); break;
    case 'Delta': w.u64(msg.revision); writeEntries(w, msg.entries); break;
    case 'Response': w.u32(msg.req); w.u64(msg.revision); writeEntries(w, msg.entries); break;
    case 'Error': {
      const raw = utf8.encode(msg.message);
      w.u32(msg.req); w.u16(msg.code); w.u32(raw.length); w.bytes(raw);
      break;
    }
    case 'Ping': case 'Pong': w.u64(msg.timestampMs); break;
    case 'PathTable':
      w.u32(msg.paths.length);
      for (const p of msg.paths) {
        const raw = utf8.encode(p.path);
        w.u32(p.pathId); w.u8(p.tag); w.u16(raw.length); w.bytes(raw);
      }
      break;
    case 'Sync': w.u32(msg.req); w.u64(msg.sinceRevision); break;
    case 'Snapshot':
      if (msg.digest.length !== 32) throw new RangeError('a snapshot digest is 32 bytes');
      w.u32(msg.req); w.u64(msg.revision); w.bytes(msg.digest); writeEntries(w, msg.entries);
      break;
    default: throw new RangeError(`unknown settings message ${msg.type}`);
  }
  return w.done();
}

/** Parse a plain body into its message. */
export function decodeBody(body) {
  const r = new Reader(body);
  const id = r.u8('message id');
  const type = MESSAGE_NAMES[id];
  let msg;
  switch (type) {
    case 'Get': msg = { type, req: r.u32('req'), pathId: r.u32('path id') }; break;
    case 'Set': msg = { type, req: r.u32('req'), pathId: r.u32('path id'), value: readValue(r, 0) }; break;
    case 'BatchGet': {
      const req = r.u32('req');
      const n = r.count(4, 'path count');
      const pathIds = [];
      for (let i = 0; i < n; i++) pathIds.push(r.u32('path id'));
      msg = { type, req, pathIds };
      break;
    }
    case 'BatchSet': msg = { type, req: r.u32('req'), entries: readEntries(r) }; break;
    case 'Delta': msg = { type, revision: r.u64('revision'), entries: readEntries(r) }; break;
    case 'Response': msg = { type, req: r.u32('req'), revision: r.u64('revision'), entries: readEntries(r) }; break;
    case 'Error': {
      const req = r.u32('req');
      const code = r.u16('error code');
      msg = { type, req, code, message: r.utf8(r.u32('message length'), 'error message') };
      break;
    }
    case 'Ping': case 'Pong': msg = { type, timestampMs: r.u64('timestamp') }; break;
    case 'PathTable': {
      const n = r.count(7, 'path count');
      const paths = [];
      for (let i = 0; i < n; i++) {
        const pathId = r.u32('path id');
        const tag = r.u8('value tag');
        if (tag > Tag.OBJECT) throw malformed(`unknown value tag 0x${tag.toString(16)} in path table`);
        const len = r.u16('path length');
        paths.push({ pathId, tag, path: r.utf8(len, 'path') });
      }
      msg = { type, paths };
      break;
    }
    case 'Sync': msg = { type, req: r.u32('req'), sinceRevision: r.u64('since revision') }; break;
    case 'Snapshot': {
      const req = r.u32('req');
      const revision = r.u64('revision');
      msg = { type, req, revision, digest: r.take(32, 'digest'), entries: readEntries(r) };
      break;
    }
    default:
      throw new ProtocolError('unknown_message', `unknown settings message 0x${id.toString(16).padStart(2, '0')}`);
  }
  r.end();
  return msg;
}

/**
 * A whole kind 0x10 frame. By default gzip when the body is over 256 bytes and shrinks
 * (asynchronous because `CompressionStream` is).
 * @param {object} msg
 * @param {{compress?: boolean}} [options] force plain (`false`) or gzip (`true`)
 * @returns {Promise<Uint8Array>}
 */
export async function encodeSettings(msg, { compress } = {}) {
  const body = encodeBody(msg);
  let packed = body;
  let did = false;
  if (compress === undefined) [packed, did] = await maybeGzip(body);
  else if (compress) [packed, did] = [await gzip(body), true];
  const out = new Uint8Array(2 + packed.length);
  out[0] = SETTINGS_KIND;
  out[1] = did ? GZIP : PLAIN;
  out.set(packed, 2);
  return out;
}

/** A plain (never compressed) kind 0x10 frame, synchronously: for small requests. */
export function encodeSettingsPlain(msg) {
  const body = encodeBody(msg);
  const out = new Uint8Array(2 + body.length);
  out[0] = SETTINGS_KIND;
  out.set(body, 2);
  return out;
}

/** The plain body of a kind 0x10 frame (inflated when `c` is 0xFF). */
export async function settingsBody(bytes) {
  if (bytes.length < 3) throw malformed('settings frame is shorter than kind, compression byte and message');
  if (bytes[0] !== SETTINGS_KIND) throw malformed(`expected kind 0x10, got 0x${bytes[0].toString(16)}`);
  if (bytes[1] === PLAIN) return bytes.subarray(2);
  if (bytes[1] === GZIP) {
    const body = await gunzip(bytes.subarray(2));
    if (!body.length) throw malformed('compressed settings body is empty');
    return body;
  }
  throw malformed(`settings compression byte 0x${bytes[1].toString(16)} is neither 0x00 nor 0xff`);
}

/** Decode a whole kind 0x10 frame. */
export async function decodeSettings(bytes) {
  return decodeBody(await settingsBody(bytes));
}

/**
 * The settings digest (§5): blake3 over `u32 pathId | value` for every path in ascending id.
 * @param {Iterable<[number, {tag:number, value:any}]>} entries
 * @returns {Uint8Array} 32 bytes
 */
export function settingsDigest(entries) {
  const sorted = [...entries].sort((a, b) => a[0] - b[0]);
  const w = new Writer();
  for (const [pid, v] of sorted) {
    w.u32(pid);
    writeValue(w, v, 0);
  }
  return blake3(w.done());
}
