/**
 * Frame kinds (docs/protocol.md §2) and the 8-byte header of kinds 0x01, 0x02, 0x03, 0x05, 0x20
 * (§2.2): `u8 kind | u8 flags | u16 epoch low 16 bits | u32 seq`, little-endian.
 * The first byte of every binary message is its kind, never a version.
 * @module protocol/header
 */
import { ProtocolError, malformed } from './errors.js';

export const HEADER_SIZE = 8;

/** Binary frame kinds (§2). */
export const Kind = Object.freeze({
  POSITIONS_V1: 0x01,
  POSITIONS_V2: 0x02,
  POSITIONS_Q: 0x03,
  SSSP: 0x05,
  SETTINGS: 0x10,
  CLIENT_POSITIONS: 0x20,
});

/** Header flag bits (§2.2); kind 0x20 reuses bits 1 and 2 as PIN and RELEASE (§4.8). */
export const Flags = Object.freeze({
  COMPRESSED: 0x01,
  KEYFRAME: 0x02,
  SETTLED: 0x04,
  PIN: 0x02,
  RELEASE: 0x04,
});

const KNOWN = new Set(Object.values(Kind));

/**
 * Read the header of a frame.
 * @param {Uint8Array} bytes the whole frame
 * @param {number} [expectKind] check the kind when given
 * @returns {{kind:number, flags:number, epoch16:number, seq:number}}
 */
export function readHeader(bytes, expectKind) {
  if (bytes.length < HEADER_SIZE) {
    throw malformed(`frame of ${bytes.length} bytes is shorter than the 8-byte header`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  const kind = dv.getUint8(0);
  if (!KNOWN.has(kind)) throw new ProtocolError('unknown_kind', `unknown frame kind 0x${hex2(kind)}`);
  if (expectKind !== undefined && kind !== expectKind) {
    throw malformed(`expected kind 0x${hex2(expectKind)}, got 0x${hex2(kind)}`);
  }
  return { kind, flags: dv.getUint8(1), epoch16: dv.getUint16(2, true), seq: dv.getUint32(4, true) };
}

/** Write a header at the start of `dv`; only the low 16 bits of `epoch` are written. */
export function writeHeader(dv, kind, flags, epoch, seq) {
  if (!(seq >= 0 && seq <= 0xffffffff)) throw new RangeError(`seq ${seq} does not fit in u32`);
  dv.setUint8(0, kind);
  dv.setUint8(1, flags & 0xff);
  dv.setUint16(2, epoch & 0xffff, true);
  dv.setUint32(4, seq >>> 0, true);
}

/** Reject flag bits a kind does not define (they must be zero, §2.2). */
export function checkFlagBits(flags, allowed, kind) {
  const extra = flags & ~allowed & 0xff;
  if (extra) throw malformed(`kind 0x${hex2(kind)} does not define flag bits 0x${hex2(extra)}`);
}

/** Two hex digits. */
export function hex2(n) {
  return n.toString(16).padStart(2, '0');
}
