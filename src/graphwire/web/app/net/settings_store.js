/**
 * The settings store the UI binds to: the client side of the binary settings protocol
 * (kind 0x10, docs/protocol.md §5).
 *
 * It learns path ids and declared tags from PathTable frames, fills itself with a Sync (a
 * Snapshot the first time, whose blake3 digest it checks), applies every Delta in revision order,
 * and writes with Set (the value carried with the path's declared tag). After a sync at the
 * revision `connection_established` named, it also checks its whole content against that digest;
 * a mismatch triggers a full Sync. Events: `change` `{path, value, revision, origin}` with origin
 * `local`, `remote` or `sync`; `paths` when the table grows; `error` for an Error reply.
 * @module net/settings_store
 */
import { Emitter } from './emitter.js';
import {
  Tag, decodeSettings, encodeSettings, encodeSettingsPlain, settingsDigest, toPlain,
} from '../protocol/settings_codec.js';
import { toHex } from '../protocol/blake3.js';

export class SettingsStore extends Emitter {
  /**
   * @param {object} options
   * @param {(bytes: Uint8Array) => void} options.send sends a kind 0x10 frame
   * @param {number} [options.timeoutMs] a request unanswered this long is rejected (10 s)
   * @param {object} [options.timers]
   */
  constructor({ send, timeoutMs = 10000, timers = globalThis }) {
    super();
    this.send = send;
    this.timeoutMs = timeoutMs;
    this.timers = timers;
    this.byId = new Map(); // id -> {path, tag}
    this.idOf = new Map(); // path -> id
    this.values = new Map(); // id -> Value
    this.revision = 0;
    this.nextReq = 1;
    this.pending = new Map();
    this.expected = null; // {revision, digest} from connection_established
    this.digestChecks = 0;
    this.digestMismatches = 0;
  }

  /** The plain value at `path` (undefined when unknown). */
  get(path) {
    const id = this.idOf.get(path);
    const v = id === undefined ? undefined : this.values.get(id);
    return v === undefined ? undefined : toPlain(v);
  }

  /** Every known path. */
  paths() {
    return [...this.idOf.keys()];
  }

  /** Handle a kind 0x10 frame from the server. */
  async handleFrame(bytes) {
    this.handle(await decodeSettings(bytes));
  }

  /** Handle a decoded message. */
  handle(msg) {
    switch (msg.type) {
      case 'PathTable':
        for (const p of msg.paths) {
          this.byId.set(p.pathId, { path: p.path, tag: p.tag });
          this.idOf.set(p.path, p.pathId);
        }
        this.emit('paths', msg.paths);
        break;
      case 'Delta':
        if (msg.revision > this.revision) this.apply(msg.entries, msg.revision, 'remote');
        break;
      case 'Snapshot': {
        this.digestChecks += 1;
        const ok = toHex(settingsDigest(msg.entries)) === toHex(msg.digest);
        if (!ok) {
          this.digestMismatches += 1;
          this.emit('error', { code: 'digest_mismatch', message: 'settings snapshot digest does not match its values' });
        }
        this.values.clear();
        this.apply(msg.entries, msg.revision, 'sync', true);
        this.settle(msg);
        this.checkExpected();
        break;
      }
      case 'Response':
        if (msg.req === 0 || this.pending.get(msg.req)?.sync) {
          if (msg.revision >= this.revision) this.apply(msg.entries, msg.revision, 'sync', true);
          this.checkExpected();
        } else if (msg.revision >= this.revision) {
          this.apply(msg.entries, msg.revision, 'local');
        }
        this.settle(msg);
        break;
      case 'Error':
        this.settle(msg, new Error(`settings error ${msg.code}: ${msg.message}`));
        this.emit('error', { code: msg.code, message: msg.message, req: msg.req });
        break;
      case 'Ping':
        this.send(encodeSettingsPlain({ type: 'Pong', timestampMs: msg.timestampMs }));
        break;
      default:
        break;
    }
  }

  apply(entries, revision, origin, force = false) {
    // a Snapshot (force) states the revision, even one below ours (another server's database)
    if (force) this.revision = revision;
    else if (revision > this.revision) this.revision = revision;
    for (const [pid, v] of entries) {
      this.values.set(pid, v);
      const meta = this.byId.get(pid);
      if (meta) this.emit('change', { path: meta.path, value: toPlain(v), revision, origin });
    }
  }

  settle(msg, error) {
    const p = this.pending.get(msg.req);
    if (!p) return;
    this.pending.delete(msg.req);
    this.timers.clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(msg);
  }

  request(msg, extra = {}) {
    const req = this.nextReq;
    this.nextReq = (this.nextReq + 1) >>> 0 || 1;
    msg.req = req;
    return new Promise((resolve, reject) => {
      const timer = this.timers.setTimeout(() => {
        this.pending.delete(req);
        reject(new Error(`settings request ${req} unanswered`));
      }, this.timeoutMs);
      this.pending.set(req, { resolve, reject, timer, ...extra });
      encodeSettings(msg).then((bytes) => this.send(bytes));
    });
  }

  /**
   * Note what `connection_established.settings` said; after the next sync the store's digest
   * is compared with it when the revisions agree.
   */
  expect(settings) {
    this.expected = { revision: settings.revision, digest: settings.digest };
  }

  checkExpected() {
    const e = this.expected;
    if (!e || e.revision !== this.revision) return;
    this.expected = null;
    this.digestChecks += 1;
    if (this.digestHex() !== e.digest) {
      this.digestMismatches += 1;
      this.emit('error', { code: 'digest_mismatch', message: 'settings differ from the server: full sync' });
      this.sync(0);
    }
  }

  /** blake3 of every value held (§5 digest), as hex. */
  digestHex() {
    return toHex(settingsDigest(this.values.entries()));
  }

  /** Sync from `since` (default: the revision held; 0 asks for a Snapshot). */
  sync(since = this.revision) {
    return this.request({ type: 'Sync', sinceRevision: since }, { sync: true });
  }

  /**
   * Write a setting; the value is sent with the path's declared tag.
   * @returns {Promise<object>} the Response
   */
  set(path, plain) {
    const id = this.idOf.get(path);
    if (id === undefined) return Promise.reject(new Error(`unknown setting ${path}`));
    const { tag } = this.byId.get(id);
    return this.request({ type: 'Set', pathId: id, value: typed(tag, plain) });
  }
}

/** A plain value as a Value of the declared tag. */
export function typed(tag, plain) {
  switch (tag) {
    case Tag.F64: case Tag.F32: return { tag, value: Number(plain) };
    case Tag.I64: case Tag.I32: return { tag, value: Math.round(Number(plain)) };
    case Tag.BOOL: return { tag, value: Boolean(plain) };
    case Tag.STRING: return { tag, value: String(plain) };
    default: return { tag, value: plain };
  }
}
