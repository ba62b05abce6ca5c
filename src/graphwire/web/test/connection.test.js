// The connection service (docs/protocol.md §6, §7, §10) against a scripted fake WebSocket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Connection } from '../app/net/connection.js';
import { FakeTimers } from './fake_timers.js';

function harness({ stateStatus = 200 } = {}) {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.closed = false;
      sockets.push(this);
    }
    send(data) { this.sent.push(data); }
    close() { this.closed = true; }
    // server side
    open() { this.onopen?.(); }
    json(obj) { this.onmessage?.({ data: JSON.stringify(obj) }); }
    drop(code = 1006) { this.onclose?.({ code, reason: '' }); }
  }
  const timers = new FakeTimers();
  const fetches = [];
  const fetch = async (url) => {
    fetches.push(url);
    if (url.includes('/api/graph/state')) return { ok: stateStatus === 200, status: stateStatus, json: async () => ({}) };
    return { ok: true, status: 200, json: async () => ({ epoch: 3, seq: 10, topologyVersion: 1, nodes: [], edges: [] }) };
  };
  const conn = new Connection({ baseUrl: 'http://h:1', WebSocket: FakeSocket, fetch, timers, random: () => 0.5 });
  const states = [];
  conn.on('state', (s) => states.push(s.state));
  return { conn, sockets, timers, fetches, states };
}

const established = (extra = {}) => ({
  type: 'connection_established', clientId: 'abc', epoch: 3, seq: 9, topologyVersion: 1, isReconnection: false,
  settings: { revision: 1, digest: '' }, heartbeat: {}, rateLimits: {}, ...extra,
});
const tick = () => new Promise((r) => setTimeout(r, 0));

test('init: established, subscribe, then GET /api/graph/data?clientId=', async () => {
  const { conn, sockets, fetches, states } = harness();
  let graph = null;
  conn.on('graph', (g) => { graph = g; });
  conn.start();
  assert.equal(sockets[0].url, 'ws://h:1/ws');
  sockets[0].open();
  sockets[0].json(established());
  assert.deepEqual(JSON.parse(sockets[0].sent[0]), { type: 'subscribe', format: 'q' });
  await tick();
  assert.deepEqual(fetches, ['http://h:1/api/graph/data?clientId=abc']);
  assert.equal(graph.epoch, 3);
  assert.deepEqual(states, ['connecting', 'connected']);
});

test('reconnect: backoff with jitter, resume, no refetch in the same epoch', async () => {
  const { conn, sockets, timers, fetches, states } = harness();
  conn.start();
  sockets[0].open();
  sockets[0].json(established());
  await tick();
  conn.lastSeq = 42;
  conn.settingsRevision = 7;
  sockets[0].drop(1001);
  await tick();
  assert.deepEqual(states.slice(-1), ['reconnecting']);
  assert.deepEqual(timers.pendingDelays(), [500]); // attempt 0: random 0.5 × 1 s
  timers.advance(500);
  assert.equal(sockets[1].url, 'ws://h:1/ws?resume=abc');
  sockets[1].drop(1006); // refused while the server is down: attempt 1, cap 2 s
  await tick();
  assert.deepEqual(timers.pendingDelays(), [1000]);
  timers.advance(1000);
  sockets[2].open();
  sockets[2].json(established({ isReconnection: true }));
  const sent = sockets[2].sent.map((s) => JSON.parse(s));
  assert.deepEqual(sent[0], { type: 'subscribe', format: 'q' });
  assert.deepEqual(sent[1], { type: 'resume', epoch: 3, seq: 42, settingsRevision: 7 });
  await tick();
  assert.equal(fetches.filter((u) => u.includes('/api/graph/data')).length, 1);
  assert.deepEqual(states.slice(-1), ['connected']);
  assert.equal(conn.attempt, 0);
});

test('a new epoch after a reconnect refetches the graph', async () => {
  const { conn, sockets, timers, fetches } = harness();
  conn.start();
  sockets[0].open();
  sockets[0].json(established());
  await tick();
  sockets[0].drop(1001);
  await tick();
  timers.advance(1000);
  sockets[1].open();
  sockets[1].json(established({ epoch: 4 }));
  await tick();
  assert.equal(fetches.filter((u) => u.includes('/api/graph/data')).length, 2);
});

test('no pong within 10 s after a ping closes the socket and reconnects', async () => {
  const { conn, sockets, timers, states } = harness();
  conn.start();
  sockets[0].open();
  sockets[0].json(established());
  await tick();
  timers.advance(30000);
  const ping = JSON.parse(sockets[0].sent.at(-1));
  assert.equal(ping.type, 'ping');
  timers.advance(9999);
  assert.equal(sockets[0].closed, false);
  timers.advance(1);
  await tick();
  assert.equal(sockets[0].closed, true);
  assert.equal(states.at(-1), 'reconnecting');
});

test('a pong in time keeps the connection', async () => {
  const { conn, sockets, timers, states } = harness();
  conn.start();
  sockets[0].open();
  sockets[0].json(established());
  await tick();
  timers.advance(30000);
  sockets[0].json({ type: 'pong', timestamp: 1 });
  timers.advance(15000);
  assert.equal(sockets[0].closed, false);
  assert.equal(states.at(-1), 'connected');
});

test('4401 stops for good; a handshake refused with 401 too', async () => {
  const a = harness();
  a.conn.start();
  a.sockets[0].open();
  a.sockets[0].json(established());
  a.sockets[0].drop(4401);
  await tick();
  assert.equal(a.states.at(-1), 'disconnected');
  assert.equal(a.timers.pendingDelays().length, 0);

  const b = harness({ stateStatus: 401 });
  b.conn.start();
  b.sockets[0].drop(1006); // never opened
  await tick();
  await tick();
  assert.equal(b.states.at(-1), 'disconnected');
  assert.equal(b.timers.pendingDelays().length, 0);
});

test('1008 after a ban waits retryAfterMs', async () => {
  const { conn, sockets, timers } = harness();
  conn.start();
  sockets[0].open();
  sockets[0].json(established());
  sockets[0].json({ type: 'error', error: { code: 'banned', message: 'x', category: 'rate_limit', retryable: true, retryAfterMs: 600000 } });
  sockets[0].drop(1008);
  await tick();
  assert.deepEqual(timers.pendingDelays(), [600000]);
});

test('messages queue while disconnected (bounded, oldest dropped) and flush after reconnect', async () => {
  const { conn, sockets, timers } = harness();
  conn.queueLimit = 3;
  conn.start();
  sockets[0].open();
  sockets[0].json(established());
  sockets[0].drop(1001);
  await tick();
  for (let i = 0; i < 5; i++) assert.equal(conn.sendJson({ type: 'ping', timestamp: i }), false);
  assert.equal(conn.dropped, 2);
  timers.advance(1000);
  sockets[1].open();
  sockets[1].json(established());
  const pings = sockets[1].sent.map((s) => JSON.parse(s)).filter((m) => m.type === 'ping');
  assert.deepEqual(pings.map((m) => m.timestamp), [2, 3, 4]);
});

test('a graph_changed that overtakes the graph body is replayed over it; a newer epoch refetches', async () => {
  const sockets = [];
  class FakeSocket {
    constructor(url) { this.url = url; this.sent = []; sockets.push(this); }
    send(data) { this.sent.push(data); }
    close() {}
  }
  const bodies = [];
  const fetches = [];
  const fetch = (url) => new Promise((resolve) => { fetches.push(url); bodies.push(resolve); });
  const conn = new Connection({ baseUrl: 'http://h:1', WebSocket: FakeSocket, fetch, timers: new FakeTimers(), random: () => 0.5 });
  const seen = [];
  conn.on('graph', (g) => seen.push(`graph v${g.topologyVersion}`));
  conn.on('graph_changed', (m) => seen.push(`changed v${m.topologyVersion}`));
  const body = (epoch, topologyVersion) => ({ ok: true, status: 200, json: async () => ({ epoch, seq: 1, topologyVersion, nodes: [], edges: [] }) });
  const change = (epoch, topologyVersion, extra = {}) => ({ type: 'graph_changed', epoch, topologyVersion, ...extra });
  conn.start();
  sockets[0].onopen();
  sockets[0].onmessage({ data: JSON.stringify(established({ topologyVersion: 2 })) });
  await tick();
  // the body (built at version 2) is on its way when versions 2 (already in it) and 3 arrive
  sockets[0].onmessage({ data: JSON.stringify(change(3, 2)) });
  sockets[0].onmessage({ data: JSON.stringify(change(3, 3)) });
  assert.deepEqual(seen, []);
  bodies[0](body(3, 2));
  await tick(); await tick();
  assert.deepEqual(seen, ['graph v2', 'changed v3']);
  assert.equal(conn.topologyVersion, 3);
  // a reload (new epoch) announced while the next body is on its way: that body is stale
  conn.loadGraph();
  await tick();
  sockets[0].onmessage({ data: JSON.stringify(change(4, 0, { refetch: true })) });
  bodies[1](body(3, 3));
  await tick(); await tick();
  assert.equal(fetches.length, 3);
  bodies[2](body(4, 0));
  await tick(); await tick();
  assert.equal(conn.epoch, 4);
  assert.deepEqual(seen.slice(2), ['graph v3', 'graph v0']);
  conn.stop?.();
});
