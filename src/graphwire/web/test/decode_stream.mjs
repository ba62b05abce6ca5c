// Decode a stream of frames with the JS modules, for the cross-implementation tests in pytest
// (tests/web/test_js_protocol.py). Reads JSON `{frames: [hex, ...]}` on stdin and prints
// JSON `{results: [...]}`: for each q frame the ids, positions and velocities after applying it
// (or the error code), for each SSSP frame its source, distances and parents.
import { QDecoder } from '../app/protocol/quantized.js';
import { decodeSssp } from '../app/protocol/sssp.js';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const { frames } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const q = new QDecoder();
const results = [];
for (const hex of frames) {
  const bytes = Uint8Array.from(Buffer.from(hex, 'hex'));
  try {
    if (bytes[0] === 0x03) {
      await q.apply(bytes);
      results.push({ seq: q.seq, keySeq: q.keySeq, ids: [...q.ids], pos: [...q.positions()], q: [...q.q],
        vel: q.vel ? [...q.vel] : null });
    } else if (bytes[0] === 0x05) {
      const s = await decodeSssp(bytes);
      results.push({ source: s.source, distance: [...s.distance].map((d) => (Number.isFinite(d) ? d : null)), parent: [...s.parent] });
    }
  } catch (err) {
    results.push({ error: err.code || String(err) });
  }
}
process.stdout.write(JSON.stringify({ results }));
