/**
 * SSSP frames, kind 0x05 (docs/protocol.md §4.9): distance and parent of every node id.
 * Payload `u32 source | u32 count | count × f32 distance | count × i32 parent`; `source` is
 * 0xFFFFFFFF when no source is set. The payload may be gzip (flag 0x01).
 * @module protocol/sssp
 */
import { Flags, HEADER_SIZE, Kind, checkFlagBits, readHeader } from './header.js';
import { malformed } from './errors.js';
import { gunzip } from './gzip.js';

export const NO_SOURCE = 0xffffffff;

/**
 * Decode an SSSP frame.
 * @param {Uint8Array} bytes
 * @returns {Promise<{header: object, source: number|null, distance: Float32Array, parent: Int32Array}>}
 */
export async function decodeSssp(bytes) {
  const header = readHeader(bytes, Kind.SSSP);
  checkFlagBits(header.flags, Flags.COMPRESSED | Flags.SETTLED, Kind.SSSP);
  const body = bytes.subarray(HEADER_SIZE);
  const p = header.flags & Flags.COMPRESSED ? await gunzip(body) : body.slice();
  if (p.length < 8) throw malformed('SSSP payload is shorter than its 8-byte prefix');
  const dv = new DataView(p.buffer, p.byteOffset, p.length);
  const source = dv.getUint32(0, true);
  const count = dv.getUint32(4, true);
  if (p.length !== 8 + 8 * count) {
    throw malformed(`SSSP payload of ${p.length} bytes does not hold ${count} distances and parents`);
  }
  if (source !== NO_SOURCE && source >= count) throw malformed(`SSSP source ${source} is outside the ${count} node ids`);
  const distance = new Float32Array(count);
  const parent = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    distance[i] = dv.getFloat32(8 + 4 * i, true);
    parent[i] = dv.getInt32(8 + 4 * count + 4 * i, true);
  }
  return { header, source: source === NO_SOURCE ? null : source, distance, parent };
}
