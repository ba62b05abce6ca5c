/**
 * The connection service: the client side of docs/protocol.md §6, §7 and §10, sans rendering.
 *
 * - Init: open `/ws`, read `connection_established`, subscribe, `GET /api/graph/data?clientId=`
 *   (the server then sends this client a keyframe at least as new as the data).
 * - Reconnect with exponential backoff 1 s → 30 s with full jitter; `/ws?resume=<clientId>`,
 *   subscribe again, then `resume` with the epoch, seq and settings revision held; refetch the
 *   graph when the epoch or the topology version differs.
 * - JSON `ping` every 30 s; no `pong` within 10 s closes the socket and reconnects.
 * - While disconnected, outgoing messages wait in a bounded queue (1000; the oldest is dropped
 *   and counted).
 * - Close codes honoured: 4401 (token refused) and a handshake answered 401/403 stop for good;
 *   1008 (banned) waits `retryAfterMs` before trying again.
 * - Every state change is an event: `state` with `{state, previous, reason}`, where state is
 *   `connecting`, `connected`, `reconnecting` or `disconnected`.
 *
 * Other events: `established` (the message, `{reconnect}`), `graph` (the /api/graph/data body),
 * `binary` (an ArrayBuffer), `graph_changed`, `subscription_confirmed`, `positions_ack`,
 * `rate_limit_warning`, `error` (§8 error object), `dropped` (a queued message was dropped).
 * @module net/connection
 */
import { Emitter } from './emitter.js';
import { backoffDelay } from './backoff.js';

export const CLOSE_TOKEN_REFUSED = 4401;
export const CLOSE_POLICY = 1008;

export class Connection extends Emitter {
  /**
   * @param {object} options
   * @param {string} options.baseUrl the server, e.g. `http://127.0.0.1:8080`
   * @param {'q'|'v2'|'v1'} [options.format] position format to subscribe to (default `q`)
   * @param {number} [options.intervalMs] subscription interval; the server clamps it to
   *   [1000/maxUpdateRate, 10000] (default: the server's default, 200 ms)
   * @param {string} [options.token] bearer token (`?token=` on /ws, a header on REST)
   * @param {number} [options.pingIntervalMs] JSON ping period (30 s)
   * @param {number} [options.pongTimeoutMs] silence after a ping that reconnects (10 s)
   * @param {number} [options.queueLimit] messages kept while disconnected (1000)
   * @param {{baseMs?: number, maxMs?: number}} [options.backoff] reconnect backoff (1 s → 30 s)
   * @param {Function} [options.WebSocket] WebSocket constructor (tests inject one)
   * @param {Function} [options.fetch] fetch function
   * @param {() => number} [options.random] jitter source
   * @param {object} [options.timers] `{setTimeout, clearTimeout}`
   */
  constructor(options) {
    super();
    this.baseUrl = options.baseUrl.replace(/\/$/, '');
    this.format = options.format || 'q';
    this.intervalMs = options.intervalMs;
    this.token = options.token || null;
    this.pingIntervalMs = options.pingIntervalMs ?? 30000;
    this.pongTimeoutMs = options.pongTimeoutMs ?? 10000;
    this.queueLimit = options.queueLimit ?? 1000;
    this.backoffOptions = { baseMs: 1000, maxMs: 30000, ...(options.backoff || {}), random: options.random || Math.random };
    this.WebSocketImpl = options.WebSocket || globalThis.WebSocket;
    this.fetchImpl = options.fetch || ((...a) => globalThis.fetch(...a));
    this.timers = options.timers || globalThis;
    this.state = 'disconnected';
    this.ws = null;
    this.clientId = null;
    this.epoch = null;
    this.topologyVersion = null;
    this.graphLoaded = false;
    this.lastSeq = 0;
    this.settingsRevision = 0;
    this.attempt = 0;
    this.queue = [];
    this.dropped = 0;
    this.stopped = true;
    this.established = null;
    this.retryAfterMs = 0;
    this.pingTimer = null;
    this.pongTimer = null;
    this.reconnectTimer = null;
    this.loading = null;
    this.changesInFlight = []; // graph_changed messages that arrived while a graph body was fetched
    this.reconnects = 0;
  }

  /** Open the connection (state `connecting`). */
  start() {
    this.stopped = false;
    this.setState('connecting');
    this.open();
  }

  /** Close for good (state `disconnected`). */
  stop() {
    this.stopped = true;
    this.clearTimers();
    if (this.ws) this.detach('stopped');
    this.setState('disconnected', 'stopped');
  }

  setState(state, reason) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.emit('state', { state, previous, reason });
  }

  wsUrl() {
    const url = new URL('/ws', this.baseUrl);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.clientId) url.searchParams.set('resume', this.clientId);
    if (this.token) url.searchParams.set('token', this.token);
    return url.toString();
  }

  headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  open() {
    const ws = new this.WebSocketImpl(this.wsUrl());
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.opened = false;
    ws.onopen = () => { this.opened = true; };
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = (ev) => this.onClose(ev.code, ev.reason);
    ws.onerror = () => {};
  }

  /** Forget the socket without waiting for its close handshake. */
  detach(reason) {
    const ws = this.ws;
    this.ws = null;
    this.established = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000, reason);
    } catch {
      // already closed
    }
  }

  onMessage(data) {
    if (typeof data !== 'string') {
      this.emit('binary', data);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    switch (msg.type) {
      case 'connection_established': this.onEstablished(msg); break;
      case 'pong':
        if (this.pongTimer !== null) { this.timers.clearTimeout(this.pongTimer); this.pongTimer = null; }
        break;
      case 'error':
        if (msg.error && msg.error.code === 'banned') this.retryAfterMs = msg.error.retryAfterMs || 0;
        this.emit('error', msg.error);
        break;
      case 'graph_changed':
        // The REST call and the socket are two connections: a change may overtake a graph body
        // built before it. While a body is on its way, changes wait and are replayed over it.
        if (this.loading) { this.changesInFlight.push(msg); break; }
        this.emit('graph_changed', msg);
        if (msg.refetch && !(msg.epoch === this.epoch && msg.topologyVersion === this.topologyVersion && this.graphLoaded)) {
          this.loadGraph();
        } else if (!msg.refetch) {
          this.topologyVersion = msg.topologyVersion;
        }
        break;
      default:
        this.emit(msg.type, msg);
    }
  }

  onEstablished(msg) {
    const reconnect = this.clientId !== null;
    const oldEpoch = this.epoch;
    this.established = msg;
    this.clientId = msg.clientId;
    this.attempt = 0;
    this.retryAfterMs = 0;
    if (reconnect) this.reconnects += 1;
    this.setState('connected');
    const sub = { type: 'subscribe', format: this.format };
    if (this.intervalMs) sub.intervalMs = this.intervalMs;
    this.sendNow(JSON.stringify(sub));
    if (reconnect) {
      this.sendNow(JSON.stringify({
        type: 'resume', epoch: oldEpoch ?? msg.epoch, seq: this.lastSeq, settingsRevision: this.settingsRevision,
      }));
    }
    this.emit('established', { message: msg, reconnect });
    const queued = this.queue;
    this.queue = [];
    for (const item of queued) this.sendNow(item);
    this.schedulePing();
    // The subscription brings a keyframe; the graph itself is fetched again only when it may
    // have changed (another epoch, another topology version) or was never loaded.
    const stale = !this.graphLoaded || msg.epoch !== oldEpoch || msg.topologyVersion !== this.topologyVersion;
    if (stale) this.loadGraph();
  }

  /** `GET /api/graph/data?clientId=`: emits `graph` with the body. */
  async loadGraph() {
    if (this.loading) return this.loading;
    const clientId = this.clientId;
    this.changesInFlight = [];
    let again = false;
    this.loading = (async () => {
      try {
        const url = `${this.baseUrl}/api/graph/data?clientId=${encodeURIComponent(clientId)}`;
        const resp = await this.fetchImpl(url, { headers: this.headers() });
        if (!resp.ok) throw new Error(`GET /api/graph/data: HTTP ${resp.status}`);
        const data = await resp.json();
        this.epoch = data.epoch;
        this.topologyVersion = data.topologyVersion;
        this.graphLoaded = true;
        this.emit('graph', data);
        again = this.replayChanges(data);
      } catch (err) {
        this.emit('error', { code: 'graph_load_failed', message: String(err && err.message || err) });
      } finally {
        this.loading = null;
        this.changesInFlight = [];
      }
      if (again) await this.loadGraph();
    })();
    return this.loading;
  }

  /**
   * Replay the `graph_changed` messages that arrived while `data` was fetched: those of its epoch
   * and newer than its topology are emitted in order. Returns true when the body is out of date
   * already (a newer epoch was announced meanwhile, or a change asks for a refetch).
   */
  replayChanges(data) {
    const during = this.changesInFlight;
    this.changesInFlight = [];
    if (during.length && during[during.length - 1].epoch !== data.epoch) return true;
    for (const msg of during) {
      if (msg.epoch !== data.epoch || msg.topologyVersion <= data.topologyVersion) continue;
      if (msg.refetch) return true;
      this.emit('graph_changed', msg);
      this.topologyVersion = msg.topologyVersion;
    }
    return false;
  }

  schedulePing() {
    if (this.pingTimer !== null) this.timers.clearTimeout(this.pingTimer);
    this.pingTimer = this.timers.setTimeout(() => {
      this.pingTimer = null;
      if (!this.established) return;
      this.sendNow(JSON.stringify({ type: 'ping', timestamp: Date.now() }));
      this.pongTimer = this.timers.setTimeout(() => {
        // A page that was busy (a long task) may have the pong queued behind this timer: give
        // queued messages one turn before declaring the connection lost.
        this.pongTimer = this.timers.setTimeout(() => {
          this.pongTimer = null;
          this.lost('no pong');
        }, 0);
      }, this.pongTimeoutMs);
      this.schedulePing();
    }, this.pingIntervalMs);
  }

  clearTimers() {
    for (const key of ['pingTimer', 'pongTimer', 'reconnectTimer']) {
      if (this[key] !== null) { this.timers.clearTimeout(this[key]); this[key] = null; }
    }
  }

  /** The socket is gone (or presumed gone): reconnect. */
  lost(reason) {
    this.detach(reason);
    this.onClose(1006, reason);
  }

  async onClose(code, reason) {
    const wasOpen = this.opened;
    this.ws = null;
    this.established = null;
    this.clearTimers();
    if (this.stopped) { this.setState('disconnected', 'stopped'); return; }
    if (code === CLOSE_TOKEN_REFUSED) { this.setState('disconnected', 'token refused'); return; }
    if (!wasOpen && await this.handshakeRefused()) {
      this.setState('disconnected', 'unauthorized');
      return;
    }
    if (this.stopped) return;
    this.setState('reconnecting', reason || `closed ${code}`);
    let delay = backoffDelay(this.attempt, this.backoffOptions);
    if (code === CLOSE_POLICY) delay = Math.max(delay, this.retryAfterMs);
    this.attempt += 1;
    this.reconnectTimer = this.timers.setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.stopped) this.open();
    }, delay);
  }

  /** A socket that never opened: was the handshake refused (401/403)? */
  async handshakeRefused() {
    try {
      const resp = await this.fetchImpl(`${this.baseUrl}/api/graph/state`, { headers: this.headers() });
      return resp.status === 401 || resp.status === 403;
    } catch {
      return false;
    }
  }

  sendNow(data) {
    if (this.ws && this.established) this.ws.send(data);
    else this.enqueue(data);
  }

  enqueue(data) {
    this.queue.push(data);
    if (this.queue.length > this.queueLimit) {
      this.queue.shift();
      this.dropped += 1;
      this.emit('dropped', { dropped: this.dropped });
    }
  }

  /**
   * Send a message (string or bytes), or queue it while disconnected.
   * @returns {boolean} whether it went to an open socket now
   */
  send(data) {
    const now = Boolean(this.ws && this.established);
    this.sendNow(data);
    return now;
  }

  /** Send a JSON control message. */
  sendJson(obj) {
    return this.send(JSON.stringify(obj));
  }

  /** Whether messages go straight to the socket. */
  get isOpen() {
    return Boolean(this.ws && this.established);
  }
}
