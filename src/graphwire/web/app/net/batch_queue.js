/**
 * The BatchQueue: nodes a user moved, sent to the server as CLIENT_POSITIONS batches (kind 0x20,
 * docs/protocol.md §4.8 and §10).
 *
 * - Batches of at most 50, flushed every 200 ms (or at once when 50 are waiting).
 * - At most 1000 updates queued; the newest update of a node replaces its older one (it keeps
 *   its place in the queue); past the bound the oldest is dropped and counted.
 * - Agent nodes go first.
 * - Invalid items (not finite, outside ±bounds, unknown node) are rejected before sending.
 * - Every batch must be answered by `positions_ack`; a batch that is not (timeout, socket down)
 *   or is refused as a whole for `rate_limited` is retried with exponential backoff, unless a
 *   newer update of the same node is already queued. `stale_epoch` batches are not retried.
 * - A batch holds one kind of update (move, pin or release), as its header flags say.
 * @module net/batch_queue
 */
import { encodeClientPositions } from '../protocol/client_positions.js';

export const MOVE = 'move';
export const PIN = 'pin';
export const RELEASE = 'release';

export class BatchQueue {
  /**
   * @param {object} options
   * @param {(bytes: Uint8Array, batch: number) => boolean} options.send hands a batch to the
   *   socket; false when it cannot go now
   * @param {() => number} options.epoch the client's epoch (written in each batch header)
   * @param {(id: number) => boolean} [options.isAgent]
   * @param {(id: number) => boolean} [options.isKnown] whether the node exists
   * @param {() => number} [options.bounds] positions must lie within ±bounds on every axis
   * @param {number} [options.batchSize] 50
   * @param {number} [options.flushMs] 200
   * @param {number} [options.maxQueued] 1000
   * @param {number} [options.ackTimeoutMs] a batch unanswered this long is retried (3000)
   * @param {number} [options.retryBaseMs] first retry delay (250), doubling
   * @param {number} [options.retryMaxMs] longest retry delay (8000)
   * @param {number} [options.maxAttempts] sends of one batch before it is given up (6)
   * @param {object} [options.timers] `{setTimeout, clearTimeout}`
   */
  constructor(options) {
    this.sendFn = options.send;
    this.epoch = options.epoch;
    this.isAgent = options.isAgent || (() => false);
    this.isKnown = options.isKnown || (() => true);
    this.bounds = options.bounds || (() => Infinity);
    this.batchSize = options.batchSize ?? 50;
    this.flushMs = options.flushMs ?? 200;
    this.maxQueued = options.maxQueued ?? 1000;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 3000;
    this.retryBaseMs = options.retryBaseMs ?? 250;
    this.retryMaxMs = options.retryMaxMs ?? 8000;
    this.maxAttempts = options.maxAttempts ?? 6;
    this.timers = options.timers || globalThis;
    /** @type {Map<number, {id:number, x:number, y:number, z:number, mode:string, attempts:number}>} */
    this.queued = new Map();
    /** node id -> its newest update: an older one is never sent again after it */
    this.newest = new Map();
    this.inflight = new Map();
    this.nextBatch = 1;
    this.flushTimer = null;
    this.counters = {
      enqueued: 0, replaced: 0, rejected: 0, dropped: 0, batchesSent: 0, itemsSent: 0,
      acked: 0, accepted: 0, rejectedByServer: 0, retried: 0, failed: 0,
    };
  }

  /**
   * Queue an update of one node.
   * @returns {string|null} null when queued, else why it was rejected
   *   (`not_finite`, `out_of_bounds`, `unknown_node`)
   */
  enqueue(id, x, y, z, mode = MOVE) {
    const item = { id, x, y, z, mode, attempts: 0 };
    const reason = this.add(item, true);
    if (reason === null) this.newest.set(id, item);
    return reason;
  }

  add(item, fresh) {
    const reason = this.validate(item);
    if (reason) {
      this.counters.rejected += 1;
      return reason;
    }
    if (fresh) this.counters.enqueued += 1;
    if (this.queued.has(item.id)) {
      this.counters.replaced += 1;
      this.queued.set(item.id, item); // Map.set on an existing key keeps its place
    } else {
      this.queued.set(item.id, item);
      if (this.queued.size > this.maxQueued) {
        const oldest = this.queued.keys().next().value;
        this.queued.delete(oldest);
        this.counters.dropped += 1;
      }
    }
    if (this.queued.size >= this.batchSize) this.flush();
    else this.scheduleFlush();
    return null;
  }

  validate({ id, x, y, z }) {
    if (![x, y, z].every(Number.isFinite)) return 'not_finite';
    const b = this.bounds();
    if (Math.abs(x) > b || Math.abs(y) > b || Math.abs(z) > b) return 'out_of_bounds';
    if (!this.isKnown(id)) return 'unknown_node';
    return null;
  }

  scheduleFlush() {
    if (this.flushTimer !== null || this.queued.size === 0) return;
    this.flushTimer = this.timers.setTimeout(() => {
      this.flushTimer = null;
      this.flush();
    }, this.flushMs);
  }

  /** Send everything queued now, in batches. */
  flush() {
    if (this.flushTimer !== null) {
      this.timers.clearTimeout(this.flushTimer);
      this.flushTimer = null;
    }
    while (this.queued.size) this.sendBatch(this.takeBatch());
  }

  /** Up to `batchSize` items of one mode, agents first, in queue order. */
  takeBatch() {
    const ordered = [...this.queued.values()];
    const agents = ordered.filter((it) => this.isAgent(it.id));
    const others = ordered.filter((it) => !this.isAgent(it.id));
    const all = agents.concat(others);
    const mode = all[0].mode;
    const batch = [];
    for (const it of all) {
      if (it.mode !== mode) continue;
      batch.push(it);
      this.queued.delete(it.id);
      if (batch.length === this.batchSize) break;
    }
    return batch;
  }

  sendBatch(items) {
    const batch = this.nextBatch;
    this.nextBatch = (this.nextBatch + 1) >>> 0 || 1;
    const ids = items.map((it) => it.id);
    const pos = items.flatMap((it) => [it.x, it.y, it.z]);
    const mode = items[0].mode;
    const bytes = encodeClientPositions(ids, pos, {
      batch, epoch: this.epoch(), pin: mode === PIN, release: mode === RELEASE,
    });
    for (const it of items) it.attempts += 1;
    const entry = { items, timer: null };
    this.inflight.set(batch, entry);
    this.counters.batchesSent += 1;
    this.counters.itemsSent += items.length;
    let sent;
    try {
      sent = this.sendFn(bytes, batch);
    } catch {
      sent = false;
    }
    if (!sent) {
      this.fail(batch);
      return;
    }
    entry.timer = this.timers.setTimeout(() => this.fail(batch), this.ackTimeoutMs);
  }

  /**
   * Handle a `positions_ack` message.
   * @param {{batch:number, accepted:number, rejected:{id:number, reason:string}[]}} ack
   */
  onAck(ack) {
    const entry = this.inflight.get(ack.batch);
    if (!entry) return;
    const rejected = ack.rejected || [];
    const whole = rejected.length === entry.items.length && rejected.length > 0;
    if (whole && rejected.every((r) => r.reason === 'rate_limited')) {
      this.fail(ack.batch);
      return;
    }
    this.settle(ack.batch);
    this.counters.acked += 1;
    this.counters.accepted += ack.accepted;
    this.counters.rejectedByServer += rejected.length;
  }

  settle(batch) {
    const entry = this.inflight.get(batch);
    if (entry && entry.timer !== null) this.timers.clearTimeout(entry.timer);
    this.inflight.delete(batch);
    return entry;
  }

  /** A batch was not answered or not sent: requeue its items after a backoff. */
  fail(batch) {
    const entry = this.settle(batch);
    if (!entry) return;
    // each update counts its own attempts (a retried one may share a batch with fresh ones)
    const again = entry.items.filter((it) => it.attempts < this.maxAttempts);
    this.counters.failed += entry.items.length - again.length;
    if (!again.length) return;
    const attempts = Math.max(...again.map((it) => it.attempts));
    const delay = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** (attempts - 1));
    this.timers.setTimeout(() => {
      for (const it of again) {
        // a newer update of the node (queued, sent or answered) supersedes this one
        if (this.newest.get(it.id) !== it) continue;
        this.counters.retried += 1;
        this.add(it, false);
      }
    }, delay);
  }

  /** Updates queued and batches waiting for an answer. */
  get pending() {
    return { queued: this.queued.size, inflight: this.inflight.size };
  }
}
