/**
 * POSITIONS_Q, kind 0x03: the compact stream, decoded exactly as docs/protocol.md §1 lays it out.
 *
 * A full keyframe (flag 0x02) holds every live node as grid coordinates; a delta names the
 * keyframe it applies to (`keySeq`) and holds whole grid steps for the nodes that moved; a rebase
 * (0x02 | 0x10) is a keyframe given as a delta from `keySeq`. Values are moves against the
 * keyframe (value coding 0) or residuals against its linear prediction (value coding 1). Because
 * every delta is relative to the held keyframe alone, any delta naming it applies exactly after
 * any skip: nothing accumulates, nothing drifts. Integers stay within ±2^30, so Int32Array holds
 * them; predictions are computed with exact integer floor division.
 *
 * `QDecoder` is the client state (sans-I/O); gzip payloads go through `DecompressionStream`.
 * @module protocol/quantized
 */
import { Flags, HEADER_SIZE, Kind, checkFlagBits, readHeader } from './header.js';
import { KeyframeMissingError, malformed } from './errors.js';
import { gunzip } from './gzip.js';
import { readVarints, readZigzagVarints } from './varint.js';

export const FLAG_VELOCITY = 0x08;
export const FLAG_REBASE = 0x10;
export const FLAG_MOTION = 0x20;
const ALLOWED = Flags.COMPRESSED | Flags.KEYFRAME | Flags.SETTLED | FLAG_VELOCITY | FLAG_REBASE | FLAG_MOTION;
const KEY_FIXED = 72;
const DELTA_FIXED = 26;
const ID_ALL = 0;
const ID_BITMAP = 1;
const ID_GAPS = 2;
export const VALUES_PREDICTED = 1;
/** Value coding 2: residuals against `base + floor(motion × factor)`, a float32 factor per axis. */
export const VALUES_FITTED = 2;
export const FACTOR_LIMIT = 1024;
export const PREDICTION_HORIZON = 16;
export const PREDICTION_SPAN_CAP = 1024;

/**
 * How many snapshots ahead a keyframe's prediction reaches: `min(steps, max(16, min(span, 1024)))`
 * (a stream in step with the snapshots extrapolates at most 16; a paced one its whole interval).
 */
export function horizon(steps, span) {
  return Math.min(steps, Math.max(PREDICTION_HORIZON, Math.min(span, PREDICTION_SPAN_CAP)));
}
const Q_LIMIT = 2 ** 30;
const MAX_SHIFT = 30;

/** floor(a / b) for integers a, b > 0 with |a| < 2^53, exactly. */
function floorDiv(a, b) {
  let q = Math.floor(a / b);
  if (q * b > a) q -= 1;
  else if ((q + 1) * b <= a) q += 1;
  return q;
}

/**
 * Where a keyframe expects its nodes `steps` snapshots later:
 * `base + floor(motion × horizon(steps, span) / span)` per node and axis.
 * @returns {Int32Array} a new array (or `base` itself when there is nothing to predict)
 */
export function predict(base, motion, span, steps) {
  if (!motion || span <= 0 || steps <= 0) return base;
  const h = horizon(steps, span);
  const out = new Int32Array(base.length);
  for (let i = 0; i < base.length; i++) {
    const m = motion[i];
    out[i] = base[i] + (m === 0 ? 0 : floorDiv(m * h, span));
  }
  return out;
}

/** Grid coordinates moved to a grid refined (shift > 0) or coarsened (floor, shift < 0). */
export function applyShift(q, shift) {
  if (!shift[0] && !shift[1] && !shift[2]) return q;
  const out = new Int32Array(q.length);
  const factor = shift.map((s) => 2 ** s);
  for (let i = 0; i < q.length; i += 3) {
    for (let a = 0; a < 3; a++) {
      const v = shift[a] >= 0 ? q[i + a] * factor[a] : Math.floor(q[i + a] * factor[a]);
      if (v >= Q_LIMIT || v <= -Q_LIMIT) throw malformed('grid coordinates exceed ±2^30');
      out[i + a] = v;
    }
  }
  return out;
}

function decodeVelocity(p, off, end, n) {
  if (end - off !== 12 + 6 * n) throw malformed(`velocity block of ${end - off} bytes for ${n} nodes`);
  const dv = new DataView(p.buffer, p.byteOffset + off, end - off);
  const scale = [dv.getFloat32(0, true), dv.getFloat32(4, true), dv.getFloat32(8, true)];
  if (!scale.every((s) => Number.isFinite(s) && s >= 0)) throw malformed('velocity scale must be finite and not negative');
  const vel = new Float32Array(3 * n);
  for (let a = 0; a < 3; a++) {
    for (let i = 0; i < n; i++) vel[3 * i + a] = dv.getInt16(12 + 2 * (a * n + i), true) * scale[a];
  }
  return vel;
}

/** Parse a full keyframe payload (already inflated). */
function parseKeyframe(header, p) {
  if (p.length < KEY_FIXED) throw malformed('keyframe payload is shorter than its fixed part');
  const dv = new DataView(p.buffer, p.byteOffset, p.length);
  const origin = new Float64Array(3);
  const step = new Float64Array(3);
  const base = [0, 0, 0];
  for (let a = 0; a < 3; a++) {
    origin[a] = dv.getFloat64(8 * a, true);
    step[a] = dv.getFloat64(24 + 8 * a, true);
    base[a] = dv.getInt32(48 + 4 * a, true);
  }
  const width = dv.getUint8(60);
  const n = dv.getUint32(64, true);
  const nruns = dv.getUint32(68, true);
  for (let a = 0; a < 3; a++) {
    if (!Number.isFinite(origin[a]) || !Number.isFinite(step[a]) || !(step[a] > 0)) {
      throw malformed('keyframe grid origin must be finite and its step positive');
    }
  }
  if (width < 2 || width > 4) throw malformed(`keyframe coordinate width ${width} is not 2, 3 or 4 bytes`);
  const need = KEY_FIXED + 8 * nruns + 3 * width * n;
  const hasVel = Boolean(header.flags & FLAG_VELOCITY);
  const velLen = hasVel ? 12 + 6 * n : 0;
  let span = 0;
  let motionLen = 0;
  if (header.flags & FLAG_MOTION) {
    if (p.length < need + 8) throw malformed('keyframe motion block is missing');
    span = dv.getUint32(need, true);
    if (span === 0) throw malformed('keyframe motion span must be at least 1');
    motionLen = 8 + dv.getUint32(need + 4, true);
  }
  if (p.length !== need + motionLen + velLen) {
    throw malformed(`keyframe payload of ${p.length} bytes does not match ${n} nodes in ${nruns} runs`);
  }
  const ids = new Uint32Array(n);
  let k = 0;
  let prevEnd = -1;
  for (let r = 0; r < nruns; r++) {
    const first = dv.getUint32(KEY_FIXED + 8 * r, true);
    const length = dv.getUint32(KEY_FIXED + 8 * r + 4, true);
    if (length === 0 || first < prevEnd || first + length > Q_LIMIT || k + length > n) {
      throw malformed('keyframe id runs must be non-empty, ascending, disjoint, < 2^30');
    }
    for (let j = 0; j < length; j++) ids[k++] = first + j;
    prevEnd = first + length;
  }
  if (k !== n) throw malformed(`keyframe id runs cover ${k} ids, not ${n}`);
  const q = new Int32Array(3 * n);
  let o = KEY_FIXED + 8 * nruns;
  for (let a = 0; a < 3; a++) {
    const acc = new Float64Array(n);
    let scale = 1;
    for (let b = 0; b < width; b++, scale *= 256) {
      for (let i = 0; i < n; i++) acc[i] += p[o + i] * scale;
      o += n;
    }
    for (let i = 0; i < n; i++) {
      const v = acc[i] + base[a];
      if (v >= Q_LIMIT || v <= -Q_LIMIT) throw malformed('keyframe grid coordinates exceed ±2^30');
      q[3 * i + a] = v;
    }
  }
  let motion = null;
  if (motionLen) {
    const cols = new Int32Array(3 * n);
    readZigzagVarints(p, need + 8, need + motionLen, 3 * n, cols, 'keyframe motion');
    motion = new Int32Array(3 * n);
    for (let a = 0; a < 3; a++) for (let i = 0; i < n; i++) motion[3 * i + a] = cols[a * n + i];
  }
  const vel = hasVel ? decodeVelocity(p, need + motionLen, p.length, n) : null;
  return { header, keyframe: true, rebase: false, origin, step, ids, q, vel, motion, span };
}

function decodeMoved(coding, p, start, end, moved, n) {
  if (coding === ID_ALL) {
    if (moved !== n || end !== start) throw malformed("id coding 'all' needs moved == nodeCount and no id bytes");
    return null; // every node, in keyframe order
  }
  if (coding === ID_BITMAP) {
    if (end - start !== Math.ceil(n / 8)) throw malformed(`moved-node bitmap of ${end - start} bytes for ${n} nodes`);
    const idx = new Int32Array(moved);
    let k = 0;
    for (let byte = 0; byte < end - start; byte++) {
      let bits = p[start + byte];
      while (bits) {
        const bit = 31 - Math.clz32(bits & -bits);
        const i = 8 * byte + bit;
        if (i >= n) throw malformed('moved-node bitmap has bits set past the last node');
        if (k >= moved) throw malformed(`moved-node bitmap marks more than ${moved} nodes`);
        idx[k++] = i;
        bits &= bits - 1;
      }
    }
    if (k !== moved) throw malformed(`moved-node bitmap marks ${k} nodes, header says ${moved}`);
    return idx;
  }
  if (coding === ID_GAPS) {
    const gaps = new Uint32Array(moved);
    readVarints(p, start, end, moved, gaps, 'moved-node gaps');
    const idx = new Int32Array(moved);
    let prev = -1;
    for (let k = 0; k < moved; k++) {
      prev = prev + gaps[k] + 1;
      if (prev >= n) throw malformed(`moved-node index ${prev} is outside the ${n} keyframe nodes`);
      idx[k] = prev;
    }
    return idx;
  }
  throw malformed(`unknown id coding ${coding}`);
}

function parseDelta(header, p) {
  if (p.length < DELTA_FIXED) throw malformed('delta payload is shorter than its fixed part');
  const dv = new DataView(p.buffer, p.byteOffset, p.length);
  const keySeq = dv.getUint32(0, true);
  const n = dv.getUint32(4, true);
  const moved = dv.getUint32(8, true);
  const idCoding = dv.getUint8(12);
  const valueCoding = dv.getUint8(13);
  const shift = [dv.getInt8(14), dv.getInt8(15), dv.getInt8(16)];
  const idLen = dv.getUint32(18, true);
  const valLen = dv.getUint32(22, true);
  const rebase = Boolean(header.flags & Flags.KEYFRAME);
  if (!rebase && (shift[0] || shift[1] || shift[2])) throw malformed('a delta that is not a rebase cannot change the grid');
  if (shift.some((s) => Math.abs(s) > MAX_SHIFT)) throw malformed(`grid shift ${shift} is out of range`);
  if (valueCoding > VALUES_FITTED) throw malformed(`unknown value coding ${valueCoding}`);
  if (moved > n) throw malformed(`${moved} moved nodes out of ${n}`);
  if (3 * moved > valLen) throw malformed(`${valLen} bytes of moves cannot hold ${moved} nodes`);
  let start = DELTA_FIXED;
  let factor = null;
  if (valueCoding === VALUES_FITTED) {
    if (p.length < start + 12) throw malformed('delta payload is shorter than its prediction factor');
    factor = [dv.getFloat32(start, true), dv.getFloat32(start + 4, true), dv.getFloat32(start + 8, true)];
    if (factor.some((f) => !Number.isFinite(f) || Math.abs(f) > FACTOR_LIMIT)) {
      throw malformed(`prediction factor ${factor} is not within ±1024`);
    }
    start += 12;
  }
  const hasVel = Boolean(header.flags & FLAG_VELOCITY);
  const velLen = hasVel ? 12 + 6 * moved : 0;
  if (p.length !== start + idLen + valLen + velLen) {
    throw malformed(`delta payload of ${p.length} bytes does not match its section lengths`);
  }
  const idx = decodeMoved(idCoding, p, start, start + idLen, moved, n);
  const cols = new Int32Array(3 * moved);
  const vStart = start + idLen;
  readZigzagVarints(p, vStart, vStart + valLen, 3 * moved, cols, 'moves');
  const vel = hasVel ? decodeVelocity(p, vStart + valLen, p.length, moved) : null;
  return { header, keyframe: false, rebase, keySeq, nodeCount: n, moved, idx, moves: cols, shift, vel, valueCoding, factor };
}

/**
 * Parse one kind 0x03 frame without stream state (inflating its payload when compressed).
 * @param {Uint8Array} bytes
 */
export async function decodeQ(bytes) {
  const header = readHeader(bytes, Kind.POSITIONS_Q);
  checkFlagBits(header.flags, ALLOWED, Kind.POSITIONS_Q);
  if (header.flags & FLAG_REBASE && !(header.flags & Flags.KEYFRAME)) throw malformed('the rebase flag needs the keyframe flag');
  const body = bytes.subarray(HEADER_SIZE);
  const p = header.flags & Flags.COMPRESSED ? await gunzip(body) : body;
  if (header.flags & Flags.KEYFRAME && !(header.flags & FLAG_REBASE)) return parseKeyframe(header, p);
  return parseDelta(header, p);
}

function checkRange(q) {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < q.length; i++) {
    const v = q[i];
    if (v < lo) lo = v;
    else if (v > hi) hi = v;
  }
  // the server keeps grid coordinates within ±2^30 (docs/protocol.md §4.4); a frame that
  // breaks that is refused (values past ±2^31 would already have wrapped in the Int32Array)
  if (hi >= Q_LIMIT || lo <= -Q_LIMIT) throw malformed('grid coordinates exceed ±2^30');
}

/**
 * q = base + floor(mo × factor) + moves for every node (a factor per axis; moves in columns
 * x…, y…, z…), and, when `next` is given, next = q − base (the motion of a rebase); refuses
 * coordinates or predictions past ±2^30.
 */
function fuseAll(q, next, base, mo, factor, moves, n) {
  const [fx, fy, fz] = factor;
  let lo = 0;
  let hi = 0;
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    // the predictions stay within ±2^30 too (docs/protocol.md §4.4)
    const px = base[j] + Math.floor(mo[j] * fx);
    const py = base[j + 1] + Math.floor(mo[j + 1] * fy);
    const pz = base[j + 2] + Math.floor(mo[j + 2] * fz);
    const x = px + moves[i];
    const y = py + moves[n + i];
    const z = pz + moves[2 * n + i];
    if (x < lo) lo = x; else if (x > hi) hi = x;
    if (y < lo) lo = y; else if (y > hi) hi = y;
    if (z < lo) lo = z; else if (z > hi) hi = z;
    if (px < lo) lo = px; else if (px > hi) hi = px;
    if (py < lo) lo = py; else if (py > hi) hi = py;
    if (pz < lo) lo = pz; else if (pz > hi) hi = pz;
    q[j] = x; q[j + 1] = y; q[j + 2] = z;
  }
  if (hi >= Q_LIMIT || lo <= -Q_LIMIT) throw malformed('grid coordinates exceed ±2^30');
  if (next !== null) for (let j = 0; j < 3 * n; j++) next[j] = q[j] - base[j];
}

/** Add the moves (columns of `moved` values) to the nodes `idx` names (null: every node). */
function addMoves(q, idx, moves, moved) {
  for (let k = 0; k < moved; k++) {
    const i = idx === null ? 3 * k : 3 * idx[k];
    const x = q[i] + moves[k];
    const y = q[i + 1] + moves[moved + k];
    const z = q[i + 2] + moves[2 * moved + k];
    if (Math.abs(x) >= Q_LIMIT || Math.abs(y) >= Q_LIMIT || Math.abs(z) >= Q_LIMIT) {
      throw malformed('grid coordinates exceed ±2^30');
    }
    q[i] = x; q[i + 1] = y; q[i + 2] = z;
  }
}

/** Client state of a kind 0x03 stream: the keyframe held and the positions shown. */
export class QDecoder {
  constructor() {
    this.reset();
  }

  /** Forget everything: the next frame must be a full keyframe. */
  reset() {
    this.keySeq = null;
    this.seq = null;
    this.settled = false;
    this.origin = null;
    this.step = null;
    this.ids = new Uint32Array(0);
    this.base = new Int32Array(0);
    this.q = new Int32Array(0);
    this.motion = null;
    this.span = 0;
    this.keyVel = null;
    this.vel = null;
    this.spare = []; // grid arrays no longer referenced, reused: no fresh megabytes a frame
  }

  /** A grid array of `length` (contents undefined: callers write every element). */
  take(length) {
    while (this.spare.length) {
      const a = this.spare.pop();
      if (a.length === length) return a;
    }
    return new Int32Array(length);
  }

  /** Hand back arrays that nothing references any more. */
  give(...arrays) {
    for (const a of arrays) {
      if (a && a !== this.base && a !== this.q && a !== this.motion && !this.spare.includes(a)) this.spare.push(a);
    }
    if (this.spare.length > 4) this.spare.length = 4;
  }

  /**
   * Apply one frame (raw bytes); throws KeyframeMissingError when it needs a keyframe not held.
   * @param {Uint8Array} bytes
   */
  async apply(bytes) {
    const frame = await decodeQ(bytes);
    this.applyParsed(frame);
    return frame;
  }

  /** Apply a frame already parsed by {@link decodeQ}. */
  applyParsed(frame) {
    if (frame.keyframe) {
      this.spare = [];
      this.origin = frame.origin;
      this.step = frame.step;
      this.ids = frame.ids;
      this.base = frame.q;
      this.q = frame.q.slice();
      this.keyVel = frame.vel;
      this.vel = frame.vel ? frame.vel.slice() : null;
      this.keySeq = frame.header.seq;
      this.motion = frame.motion;
      this.span = frame.span;
    } else {
      this.applyDelta(frame);
    }
    this.seq = frame.header.seq;
    this.settled = Boolean(frame.header.flags & Flags.SETTLED);
  }

  applyDelta(d) {
    if (this.keySeq !== d.keySeq || this.origin === null) throw new KeyframeMissingError(d.keySeq, this.keySeq);
    const n = this.ids.length;
    if (d.nodeCount !== n) throw malformed(`delta for ${d.nodeCount} nodes, keyframe holds ${n}`);
    const base = this.base;
    const fitted = d.valueCoding === VALUES_FITTED;
    const motion = d.valueCoding === VALUES_PREDICTED || fitted ? this.motion : null;
    const steps = d.header.seq - d.keySeq;
    const predicted = Boolean(motion) && (fitted || (this.span > 0 && steps > 0));
    const h = horizon(steps, this.span);
    const span = this.span;
    const shift = d.rebase ? d.shift : [0, 0, 0];
    const shifted = shift[0] !== 0 || shift[1] !== 0 || shift[2] !== 0;
    const q = this.take(3 * n);
    const fused = d.idx === null && !shifted && (!predicted || fitted || span === 1);
    // motion of a rebase that moves every node on the same grid: written by the fused pass
    const next = fused && d.rebase ? this.take(3 * n) : null;
    if (fused) {
      // every node moved, no grid change (what a moving layout sends each snapshot): one pass
      // computes prediction + move, the new motion and the range check
      // (a span of 1 predicts motion × h, an integer: the floor of the product is itself)
      const factor = !predicted ? [0, 0, 0] : fitted ? d.factor : [h, h, h];
      fuseAll(q, next, base, predicted ? motion : base, factor, d.moves, n);
    } else {
      // prediction (exact integer floor division) and the grid shift of a rebase, then the
      // moves of the frame; the same formulas as docs/protocol.md §4.4
      if (!predicted && !shifted) {
        q.set(base);
      } else if (!shifted && span === 1 && !fitted) {
        for (let i = 0; i < 3 * n; i++) q[i] = base[i] + motion[i] * h;
        checkRange(q);
      } else {
        const f = shift.map((sh) => 2 ** sh);
        for (let i = 0; i < 3 * n; i += 3) {
          for (let a = 0; a < 3; a++) {
            let v = base[i + a];
            if (predicted) {
              const mo = motion[i + a];
              if (mo !== 0) {
                if (fitted) v += Math.floor(mo * d.factor[a]);
                else v += span === 1 ? mo * h : floorDiv(mo * h, span);
              }
            }
            if (shift[a] > 0) v *= f[a];
            else if (shift[a] < 0) v = Math.floor(v * f[a]);
            if (v >= Q_LIMIT || v <= -Q_LIMIT) throw malformed('grid coordinates exceed ±2^30');
            q[i + a] = v;
          }
        }
      }
      addMoves(q, d.idx, d.moves, d.moved);
    }
    let vel = null;
    if (d.vel) {
      vel = this.keyVel ? this.keyVel.slice() : new Float32Array(3 * n);
      for (let k = 0; k < d.moved; k++) {
        const i = d.idx === null ? 3 * k : 3 * d.idx[k];
        vel[i] = d.vel[3 * k]; vel[i + 1] = d.vel[3 * k + 1]; vel[i + 2] = d.vel[3 * k + 2];
      }
    }
    const oldQ = this.q;
    if (d.rebase) {
      const oldBase = base;
      const oldMotion = this.motion;
      // motion = q − (shifted) base, over the snapshots since the old keyframe
      let motionNext = next;
      if (motionNext === null) {
        motionNext = this.take(3 * n);
        const sb = shifted ? applyShift(base, shift) : base;
        for (let i = 0; i < 3 * n; i++) motionNext[i] = q[i] - sb[i];
      }
      this.motion = motionNext;
      this.span = steps;
      this.step = this.step.map((st, a) => st * 2 ** -shift[a]);
      this.base = q; // q is never written again: the next frame builds a new array
      this.keyVel = vel ? vel.slice() : null;
      this.keySeq = d.header.seq;
      this.q = q;
      this.give(oldBase, oldMotion, oldQ);
    } else {
      this.q = q;
      this.give(oldQ);
    }
    this.vel = vel;
  }

  /**
   * Decoded coordinates in keyframe id order, x, y, z interleaved (origin + q × step,
   * computed in float64, stored as float32).
   * @param {Float32Array} [out]
   */
  positions(out) {
    const n = this.ids.length;
    const dst = out || new Float32Array(3 * n);
    if (!this.origin) return dst;
    const [ox, oy, oz] = this.origin;
    const [sx, sy, sz] = this.step;
    const q = this.q;
    for (let i = 0, j = 0; i < n; i++, j += 3) {
      dst[j] = ox + q[j] * sx;
      dst[j + 1] = oy + q[j + 1] * sy;
      dst[j + 2] = oz + q[j + 2] * sz;
    }
    return dst;
  }
}
