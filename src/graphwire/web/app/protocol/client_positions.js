/**
 * CLIENT_POSITIONS, kind 0x20 (docs/protocol.md §4.8): nodes a user moved, sent to the server.
 * Header flags `0x02` pin, `0x04` release; epoch = the client's epoch; seq = the batch number.
 * Payload `n × (u32 id | f32 x | f32 y | f32 z)`.
 * @module protocol/client_positions
 */
import { Flags, HEADER_SIZE, Kind, checkFlagBits, readHeader, writeHeader } from './header.js';
import { malformed } from './errors.js';

export const ENTRY = 16;

/**
 * Encode a batch.
 * @param {ArrayLike<number>} ids
 * @param {ArrayLike<number>} pos x, y, z interleaved
 * @param {{batch:number, epoch:number, pin?:boolean, release?:boolean}} options
 * @returns {Uint8Array}
 */
export function encodeClientPositions(ids, pos, { batch, epoch, pin = false, release = false }) {
  if (pin && release) throw new RangeError('a batch cannot both pin and release');
  const n = ids.length;
  const bytes = new Uint8Array(HEADER_SIZE + ENTRY * n);
  const dv = new DataView(bytes.buffer);
  writeHeader(dv, Kind.CLIENT_POSITIONS, (pin ? Flags.PIN : 0) | (release ? Flags.RELEASE : 0), epoch, batch);
  for (let i = 0; i < n; i++) {
    const o = HEADER_SIZE + ENTRY * i;
    dv.setUint32(o, ids[i], true);
    dv.setFloat32(o + 4, pos[3 * i], true);
    dv.setFloat32(o + 8, pos[3 * i + 1], true);
    dv.setFloat32(o + 12, pos[3 * i + 2], true);
  }
  return bytes;
}

/**
 * Decode a batch.
 * @param {Uint8Array} bytes
 */
export function decodeClientPositions(bytes) {
  const header = readHeader(bytes, Kind.CLIENT_POSITIONS);
  checkFlagBits(header.flags, Flags.PIN | Flags.RELEASE, Kind.CLIENT_POSITIONS);
  const pin = Boolean(header.flags & Flags.PIN);
  const release = Boolean(header.flags & Flags.RELEASE);
  if (pin && release) throw malformed('a client positions batch cannot both pin and release');
  const body = bytes.length - HEADER_SIZE;
  if (body % ENTRY) throw malformed(`client positions payload of ${body} bytes is not a whole number of 16-byte entries`);
  const n = body / ENTRY;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const ids = new Uint32Array(n);
  const pos = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    const o = HEADER_SIZE + ENTRY * i;
    ids[i] = dv.getUint32(o, true);
    pos[3 * i] = dv.getFloat32(o + 4, true);
    pos[3 * i + 1] = dv.getFloat32(o + 8, true);
    pos[3 * i + 2] = dv.getFloat32(o + 12, true);
  }
  return { header, batch: header.seq, pin, release, ids, pos };
}
