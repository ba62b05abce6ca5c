/**
 * gzip through the platform's `DecompressionStream` / `CompressionStream` (docs/protocol.md §2, §5):
 * the browser's own inflater, nothing else. Inflating stops at a cap (10 MiB by default), so a
 * decompression bomb costs at most the cap in memory and is refused with `too_large`.
 * @module protocol/gzip
 */
import { ProtocolError, malformed } from './errors.js';

/** Largest inflated payload accepted (§2, §10: 10 MiB). */
export const MAX_INFLATED = 10 * 1024 * 1024;
/** Payloads of at most this many bytes are never compressed (§2.2, §5). */
export const COMPRESS_THRESHOLD = 256;

async function collect(readable, limit) {
  const reader = readable.getReader();
  const parts = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw new ProtocolError('too_large', `compressed payload inflates past ${limit} bytes`);
    }
    parts.push(value);
  }
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/**
 * Inflate one gzip member.
 * @param {Uint8Array} data
 * @param {number} [limit]
 * @returns {Promise<Uint8Array>}
 */
export async function gunzip(data, limit = MAX_INFLATED) {
  const ds = new DecompressionStream('gzip');
  const writer = ds.writable.getWriter();
  const written = writer.write(data).then(() => writer.close());
  try {
    const [out] = await Promise.all([collect(ds.readable, limit), written]);
    return out;
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    throw malformed(`bad gzip payload: ${err && err.message ? err.message : err}`);
  }
}

/** gzip `data` (one member). */
export async function gzip(data) {
  const cs = new CompressionStream('gzip');
  const writer = cs.writable.getWriter();
  const written = writer.write(data).then(() => writer.close());
  const [out] = await Promise.all([collect(cs.readable, Infinity), written]);
  return out;
}

/** Compress when over `threshold` bytes and gzip makes it smaller: `[bytes, compressed]`. */
export async function maybeGzip(payload, threshold = COMPRESS_THRESHOLD) {
  if (payload.length <= threshold) return [payload, false];
  const packed = await gzip(payload);
  return packed.length < payload.length ? [packed, true] : [payload, false];
}
