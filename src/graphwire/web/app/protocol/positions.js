/**
 * POSITIONS_V1 (kind 0x01, 34-byte records) and POSITIONS_V2 (kind 0x02, 36-byte records),
 * docs/protocol.md §4.7. Decoding returns columns (typed arrays) in frame order; V2 records
 * are 4-byte aligned, so on little-endian hosts (every browser) they are read through one
 * Uint32Array/Float32Array view of the frame, without a DataView call per field.
 * @module protocol/positions
 */
import { Flags, HEADER_SIZE, Kind, checkFlagBits, readHeader, writeHeader } from './header.js';
import { malformed } from './errors.js';

export const V1_RECORD = 34;
export const V2_RECORD = 36;
export const V1_MAX_ID = 0x3fff;
export const V2_MAX_ID = 0x3fffffff;
const ALLOWED = Flags.KEYFRAME | Flags.SETTLED;
const LITTLE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * @typedef {object} NodeRecords
 * @property {Uint32Array} ids
 * @property {Uint8Array} agent 1 = agent, 0 = knowledge
 * @property {Float32Array} pos x, y, z interleaved
 * @property {Float32Array} vel vx, vy, vz interleaved
 * @property {Float32Array} dist shortest-path distance (+Infinity: none)
 * @property {Int32Array} parent shortest-path parent (-1: none)
 */

function allocate(n) {
  return {
    ids: new Uint32Array(n), agent: new Uint8Array(n), pos: new Float32Array(3 * n),
    vel: new Float32Array(3 * n), dist: new Float32Array(n), parent: new Int32Array(n),
  };
}

function frameOf(bytes, kind, record) {
  const header = readHeader(bytes, kind);
  if (header.flags & Flags.COMPRESSED) throw malformed(`kind 0x0${kind} frames are never compressed`);
  checkFlagBits(header.flags, ALLOWED, kind);
  const body = bytes.length - HEADER_SIZE;
  if (body % record) {
    throw malformed(`kind 0x0${kind} payload of ${body} bytes is not a whole number of ${record}-byte records`);
  }
  return { header, n: body / record };
}

/**
 * Decode a V2 frame.
 * @param {Uint8Array} bytes
 * @returns {{header: object, nodes: NodeRecords}}
 */
export function decodeV2(bytes) {
  const { header, n } = frameOf(bytes, Kind.POSITIONS_V2, V2_RECORD);
  const out = allocate(n);
  if (LITTLE && (bytes.byteOffset & 3) === 0) {
    const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset + HEADER_SIZE, 9 * n);
    const f32 = new Float32Array(bytes.buffer, bytes.byteOffset + HEADER_SIZE, 9 * n);
    const i32 = new Int32Array(bytes.buffer, bytes.byteOffset + HEADER_SIZE, 9 * n);
    for (let i = 0, r = 0; i < n; i++, r += 9) {
      const wire = u32[r];
      out.ids[i] = wire & V2_MAX_ID;
      const agent = wire >>> 31;
      if (agent === ((wire >>> 30) & 1)) throw malformed(`record ${i} must set exactly one of the agent and knowledge bits`);
      out.agent[i] = agent;
      const p = 3 * i;
      out.pos[p] = f32[r + 1]; out.pos[p + 1] = f32[r + 2]; out.pos[p + 2] = f32[r + 3];
      out.vel[p] = f32[r + 4]; out.vel[p + 1] = f32[r + 5]; out.vel[p + 2] = f32[r + 6];
      out.dist[i] = f32[r + 7];
      out.parent[i] = i32[r + 8];
    }
  } else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let i = 0; i < n; i++) {
      const o = HEADER_SIZE + V2_RECORD * i;
      const wire = dv.getUint32(o, true);
      const agent = wire >>> 31;
      if (agent === ((wire >>> 30) & 1)) throw malformed(`record ${i} must set exactly one of the agent and knowledge bits`);
      out.ids[i] = wire & V2_MAX_ID;
      out.agent[i] = agent;
      readFloats(dv, o + 4, out, i);
    }
  }
  return { header, nodes: out };
}

/**
 * The positions of a V2 frame written straight into an array indexed by node id (x, y, z at
 * 3 × id), without building columns: the decode worker's path. `grow(maxId)` is called once with
 * the largest id of the frame and returns the array to write into (at least 3 × (maxId + 1)).
 * @param {Uint8Array} bytes
 * @param {(maxId: number) => Float32Array} grow
 * @returns {{header: object, count: number}}
 */
export function scatterV2(bytes, grow) {
  const { header, n } = frameOf(bytes, Kind.POSITIONS_V2, V2_RECORD);
  if (!(LITTLE && (bytes.byteOffset & 3) === 0)) {
    const { nodes } = decodeV2(bytes);
    let maxId = 0;
    for (let i = 0; i < n; i++) if (nodes.ids[i] > maxId) maxId = nodes.ids[i];
    const byId = grow(maxId);
    for (let i = 0; i < n; i++) byId.set(nodes.pos.subarray(3 * i, 3 * i + 3), 3 * nodes.ids[i]);
    return { header, count: n };
  }
  const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset + HEADER_SIZE, 9 * n);
  const f32 = new Float32Array(bytes.buffer, bytes.byteOffset + HEADER_SIZE, 9 * n);
  let maxId = 0;
  for (let r = 0; r < 9 * n; r += 9) {
    const wire = u32[r];
    if ((wire >>> 31) === ((wire >>> 30) & 1)) throw malformed(`record ${r / 9} must set exactly one of the agent and knowledge bits`);
    const id = wire & V2_MAX_ID;
    if (id > maxId) maxId = id;
  }
  const byId = grow(maxId);
  for (let r = 0; r < 9 * n; r += 9) {
    const o = 3 * (u32[r] & V2_MAX_ID);
    byId[o] = f32[r + 1];
    byId[o + 1] = f32[r + 2];
    byId[o + 2] = f32[r + 3];
  }
  return { header, count: n };
}

function readFloats(dv, o, out, i) {
  const p = 3 * i;
  out.pos[p] = dv.getFloat32(o, true);
  out.pos[p + 1] = dv.getFloat32(o + 4, true);
  out.pos[p + 2] = dv.getFloat32(o + 8, true);
  out.vel[p] = dv.getFloat32(o + 12, true);
  out.vel[p + 1] = dv.getFloat32(o + 16, true);
  out.vel[p + 2] = dv.getFloat32(o + 20, true);
  out.dist[i] = dv.getFloat32(o + 24, true);
  out.parent[i] = dv.getInt32(o + 28, true);
}

/**
 * Decode a V1 frame (ids up to 16383).
 * @param {Uint8Array} bytes
 * @returns {{header: object, nodes: NodeRecords}}
 */
export function decodeV1(bytes) {
  const { header, n } = frameOf(bytes, Kind.POSITIONS_V1, V1_RECORD);
  const out = allocate(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i < n; i++) {
    const o = HEADER_SIZE + V1_RECORD * i;
    const wire = dv.getUint16(o, true);
    const agent = wire >>> 15;
    if (agent === ((wire >>> 14) & 1)) throw malformed(`record ${i} must set exactly one of the agent and knowledge bits`);
    out.ids[i] = wire & V1_MAX_ID;
    out.agent[i] = agent;
    readFloats(dv, o + 2, out, i);
  }
  return { header, nodes: out };
}

function encode(kind, record, idBytes, nodes, { seq, epoch, flags = 0 }) {
  checkFlagBits(flags, ALLOWED, kind);
  const n = nodes.ids.length;
  const bytes = new Uint8Array(HEADER_SIZE + record * n);
  const dv = new DataView(bytes.buffer);
  writeHeader(dv, kind, flags, epoch, seq);
  const max = kind === Kind.POSITIONS_V1 ? V1_MAX_ID : V2_MAX_ID;
  for (let i = 0; i < n; i++) {
    const o = HEADER_SIZE + record * i;
    const id = nodes.ids[i];
    if (id > max) throw new RangeError(`node id ${id} cannot be written in kind 0x0${kind}`);
    if (idBytes === 2) dv.setUint16(o, id | (nodes.agent[i] ? 0x8000 : 0x4000), true);
    else dv.setUint32(o, (id | (nodes.agent[i] ? 0x80000000 : 0x40000000)) >>> 0, true);
    const f = o + idBytes;
    const p = 3 * i;
    for (let k = 0; k < 3; k++) dv.setFloat32(f + 4 * k, nodes.pos[p + k], true);
    for (let k = 0; k < 3; k++) dv.setFloat32(f + 12 + 4 * k, nodes.vel[p + k], true);
    dv.setFloat32(f + 24, nodes.dist[i], true);
    dv.setInt32(f + 28, nodes.parent[i], true);
  }
  return bytes;
}

/** Encode a V2 frame (tests and tools; the server is the one that sends these). */
export function encodeV2(nodes, options) {
  return encode(Kind.POSITIONS_V2, V2_RECORD, 4, nodes, options);
}

/** Encode a V1 frame; ids above 16383 are refused, never truncated. */
export function encodeV1(nodes, options) {
  return encode(Kind.POSITIONS_V1, V1_RECORD, 2, nodes, options);
}
