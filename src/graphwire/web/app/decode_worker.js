/**
 * The decode worker: position and SSSP frames are decoded here, off the page's main thread.
 *
 * In: `{type: 'layout', idOfSlot}` (which node id each render slot shows; 0xFFFFFFFF = none),
 * `{type: 'frame', buf}` (an ArrayBuffer, transferred), `{type: 'reset'}` (new epoch).
 * Out: `{type: 'positions', pos, seq, partial, ...}` where `pos` is a Float32Array of x, y, z per
 * render slot, transferred (the page copies it into the GPU attribute as is; `partial`: some
 * slots are NaN, nodes no frame has placed yet); `{type: 'sssp', ...}`;
 * `{type: 'need_keyframe'}` when a q delta names a keyframe not held.
 *
 * Positions are kept by node id, so frames that arrive before the graph (or before a topology
 * change reaches the page) are not lost: the next layout re-scatters them into slots.
 * @module decode_worker
 */
import { Kind } from './protocol/header.js';
import { QDecoder } from './protocol/quantized.js';
import { decodeV1, scatterV2 } from './protocol/positions.js';
import { decodeSssp } from './protocol/sssp.js';
import { KeyframeMissingError } from './protocol/errors.js';

const NONE = 0xffffffff;
const state = {
  q: new QDecoder(),
  byId: new Float32Array(0),
  idOfSlot: new Uint32Array(0),
  identity: false, // slot s shows node id s for every slot: the scatter is one copy
  last: null,
  pool: [], // position buffers the page handed back after applying them
};

function ensureIds(maxId) {
  if ((maxId + 1) * 3 <= state.byId.length) return;
  const next = new Float32Array(Math.max((maxId + 1) * 3, state.byId.length * 2)).fill(NaN);
  next.set(state.byId);
  state.byId = next;
}

function buffer(length) {
  while (state.pool.length) {
    const b = state.pool.pop();
    if (b.length === length) return b;
  }
  return new Float32Array(length);
}

function scatter() {
  const slots = state.idOfSlot;
  const byId = state.byId;
  const out = buffer(slots.length * 3);
  if (state.identity && byId.length >= 3 * slots.length) {
    out.set(byId.subarray(0, 3 * slots.length));
    return out;
  }
  out.fill(NaN);
  const limit = byId.length / 3;
  for (let s = 0; s < slots.length; s++) {
    const id = slots[s];
    if (id === NONE || id >= limit) continue;
    const i = 3 * id;
    const o = 3 * s;
    out[o] = byId[i];
    out[o + 1] = byId[i + 1];
    out[o + 2] = byId[i + 2];
  }
  return out;
}

function post(meta, t0) {
  const pos = scatter();
  // a slot whose node no frame has placed yet (added since the last frame): NaN, and the page
  // keeps where it put it (graph_changed's position) instead of drawing it at the origin
  const partial = pos.some(Number.isNaN);
  const decodeMs = performance.now() - t0;
  state.last = meta;
  self.postMessage({ type: 'positions', pos, decodeMs, partial, ...meta }, [pos.buffer]);
}

async function onFrame(buf) {
  const t0 = performance.now();
  const bytes = new Uint8Array(buf);
  const kind = bytes[0];
  if (kind === Kind.POSITIONS_Q) {
    const q = state.q;
    try {
      await q.apply(bytes);
    } catch (err) {
      if (err instanceof KeyframeMissingError) {
        self.postMessage({ type: 'need_keyframe', needed: err.needed, held: err.held });
        return;
      }
      throw err;
    }
    const n = q.ids.length;
    if (n) ensureIds(q.ids[n - 1]);
    // origin + q × step straight into the positions by id
    const byId = state.byId;
    const ids = q.ids;
    const grid = q.q;
    const [ox, oy, oz] = q.origin;
    const [sx, sy, sz] = q.step;
    for (let i = 0, j = 0; i < n; i++, j += 3) {
      const o = 3 * ids[i];
      byId[o] = ox + grid[j] * sx;
      byId[o + 1] = oy + grid[j + 1] * sy;
      byId[o + 2] = oz + grid[j + 2] * sz;
    }
    post({ format: 'q', seq: q.seq, flags: bytes[1], settled: q.settled, bytes: bytes.length, nodes: n }, t0);
  } else if (kind === Kind.POSITIONS_V2) {
    const { header: h, count } = scatterV2(bytes, (maxId) => { ensureIds(maxId); return state.byId; });
    post({ format: 'v2', seq: h.seq, flags: h.flags, settled: Boolean(h.flags & 0x04), bytes: bytes.length, nodes: count }, t0);
  } else if (kind === Kind.POSITIONS_V1) {
    const frame = decodeV1(bytes);
    const { ids, pos } = frame.nodes;
    let maxId = 0;
    for (let i = 0; i < ids.length; i++) if (ids[i] > maxId) maxId = ids[i];
    ensureIds(maxId);
    const byId = state.byId;
    for (let i = 0; i < ids.length; i++) {
      const o = 3 * ids[i];
      byId[o] = pos[3 * i];
      byId[o + 1] = pos[3 * i + 1];
      byId[o + 2] = pos[3 * i + 2];
    }
    const h = frame.header;
    post({
      format: 'v1', seq: h.seq, flags: h.flags,
      settled: Boolean(h.flags & 0x04), bytes: bytes.length, nodes: ids.length,
    }, t0);
  } else if (kind === Kind.SSSP) {
    const s = await decodeSssp(bytes);
    self.postMessage({ type: 'sssp', source: s.source, seq: s.header.seq, distance: s.distance, parent: s.parent },
      [s.distance.buffer, s.parent.buffer]);
  }
}

function onMessage(msg) {
  switch (msg.type) {
    case 'frame': return onFrame(msg.buf);
    case 'layout':
      state.idOfSlot = msg.idOfSlot;
      state.identity = msg.idOfSlot.every((id, s) => id === s);
      if (state.last) {
        const meta = state.last;
        post({ ...meta, relayout: true }, performance.now());
        state.last = meta;
      }
      return undefined;
    case 'recycle':
      if (state.pool.length < 3) state.pool.push(new Float32Array(msg.buf));
      return undefined;
    case 'reset':
      state.q.reset();
      state.byId = new Float32Array(0);
      state.last = null;
      return undefined;
    default:
      return undefined;
  }
}

let chain = Promise.resolve();
self.onmessage = (ev) => {
  chain = chain.then(() => onMessage(ev.data)).catch((err) => {
    self.postMessage({ type: 'error', code: err.code || 'internal', message: String(err.message || err) });
  });
};
