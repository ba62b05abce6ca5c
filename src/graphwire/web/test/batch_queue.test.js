// The BatchQueue (docs/protocol.md §4.8, §10): batching, replacement, priority, validation, bounds,
// retry, each asserted on the bytes it sends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchQueue, PIN, RELEASE } from '../app/net/batch_queue.js';
import { decodeClientPositions } from '../app/protocol/client_positions.js';
import { FakeTimers } from './fake_timers.js';

function setup(options = {}) {
  const timers = new FakeTimers();
  const sent = [];
  let online = true;
  const q = new BatchQueue({
    send: (bytes) => {
      if (!online) return false;
      sent.push(decodeClientPositions(bytes));
      return true;
    },
    epoch: () => 0x12345,
    isAgent: (id) => id >= 1000,
    isKnown: (id) => id < 5000,
    bounds: () => 500,
    timers,
    ...options,
  });
  return { q, sent, timers, setOnline: (v) => { online = v; } };
}

test('updates wait up to 200 ms and go as one batch', () => {
  const { q, sent, timers } = setup();
  q.enqueue(1, 1, 2, 3);
  q.enqueue(2, 4, 5, 6);
  timers.advance(199);
  assert.equal(sent.length, 0);
  timers.advance(1);
  assert.equal(sent.length, 1);
  assert.deepEqual([...sent[0].ids], [1, 2]);
  assert.deepEqual([...sent[0].pos], [1, 2, 3, 4, 5, 6]);
  assert.equal(sent[0].header.epoch16, 0x2345);
  assert.equal(sent[0].batch, 1);
});

test('batches hold at most 50 and a full batch goes at once', () => {
  const { q, sent, timers } = setup();
  for (let i = 0; i < 120; i++) q.enqueue(i, i, 0, 0);
  assert.deepEqual(sent.map((b) => b.ids.length), [50, 50]);
  timers.advance(200);
  assert.deepEqual(sent.map((b) => b.ids.length), [50, 50, 20]);
  assert.deepEqual(sent.map((b) => b.batch), [1, 2, 3]);
  assert.deepEqual(sent.flatMap((b) => [...b.ids]), Array.from({ length: 120 }, (_, i) => i));
});

test('the newest update of a node replaces the older one, in its place', () => {
  const { q, sent, timers } = setup();
  q.enqueue(7, 1, 1, 1);
  q.enqueue(8, 2, 2, 2);
  q.enqueue(7, 9, 9, 9);
  timers.advance(200);
  assert.deepEqual([...sent[0].ids], [7, 8]);
  assert.deepEqual([...sent[0].pos.subarray(0, 3)], [9, 9, 9]);
  assert.equal(q.counters.replaced, 1);
});

test('agent nodes go first', () => {
  const { q, sent, timers } = setup();
  q.enqueue(3, 0, 0, 0);
  q.enqueue(1001, 0, 0, 0);
  q.enqueue(4, 0, 0, 0);
  q.enqueue(1002, 0, 0, 0);
  timers.advance(200);
  assert.deepEqual([...sent[0].ids], [1001, 1002, 3, 4]);
});

test('invalid items are rejected before sending', () => {
  const { q, sent, timers } = setup();
  assert.equal(q.enqueue(1, NaN, 0, 0), 'not_finite');
  assert.equal(q.enqueue(1, Infinity, 0, 0), 'not_finite');
  assert.equal(q.enqueue(1, 0, 501, 0), 'out_of_bounds');
  assert.equal(q.enqueue(6000, 0, 0, 0), 'unknown_node');
  assert.equal(q.enqueue(1, 0, 500, 0), null);
  timers.advance(200);
  assert.equal(sent.length, 1);
  assert.deepEqual([...sent[0].ids], [1]);
  assert.equal(q.counters.rejected, 4);
});

test('at most 1000 are queued: the oldest is dropped and counted', () => {
  const { q, sent, timers } = setup({ batchSize: 5000, isAgent: () => false });
  for (let i = 0; i < 1003; i++) q.enqueue(i, 0, 0, 0);
  assert.equal(q.pending.queued, 1000);
  assert.equal(q.counters.dropped, 3);
  timers.advance(200);
  const ids = sent.flatMap((b) => [...b.ids]);
  assert.equal(ids.length, 1000);
  assert.equal(ids[0], 3);
});

test('pin and release go in separate batches with their flags', () => {
  const { q, sent, timers } = setup();
  q.enqueue(1, 0, 0, 0, PIN);
  q.enqueue(2, 0, 0, 0, RELEASE);
  q.enqueue(3, 0, 0, 0, PIN);
  timers.advance(200);
  assert.equal(sent.length, 2);
  assert.deepEqual([...sent[0].ids], [1, 3]);
  assert.equal(sent[0].pin, true);
  assert.deepEqual([...sent[1].ids], [2]);
  assert.equal(sent[1].release, true);
});

test('an unanswered batch is retried with exponential backoff, then given up', () => {
  const { q, sent, timers } = setup({ ackTimeoutMs: 1000, retryBaseMs: 100, maxAttempts: 3 });
  q.enqueue(1, 1, 1, 1);
  timers.advance(200); // first send
  assert.equal(sent.length, 1);
  timers.advance(1000); // no ack: retry after 100 ms, then the 200 ms flush
  timers.advance(100 + 200);
  assert.equal(sent.length, 2);
  assert.notEqual(sent[1].batch, sent[0].batch);
  timers.advance(1000); // no ack again: retry after 200 ms
  timers.advance(199 + 200);
  assert.equal(sent.length, 2);
  timers.advance(1);
  assert.equal(sent.length, 3);
  timers.advance(1000 + 10000); // third attempt unanswered: given up
  assert.equal(sent.length, 3);
  assert.equal(q.counters.failed, 1);
  assert.equal(q.counters.retried, 2);
});

test('an acknowledged batch is not retried; server rejections are counted', () => {
  const { q, sent, timers } = setup({ ackTimeoutMs: 1000 });
  q.enqueue(1, 1, 1, 1);
  q.enqueue(2, 1, 1, 1);
  timers.advance(200);
  q.onAck({ batch: sent[0].batch, accepted: 1, rejected: [{ id: 2, reason: 'unknown_node' }] });
  timers.advance(20000);
  assert.equal(sent.length, 1);
  assert.equal(q.counters.accepted, 1);
  assert.equal(q.counters.rejectedByServer, 1);
});

test('a rate-limited batch is retried, unless a newer update superseded it', () => {
  const { q, sent, timers } = setup({ retryBaseMs: 100 });
  q.enqueue(1, 1, 1, 1);
  q.enqueue(2, 2, 2, 2);
  timers.advance(200);
  q.onAck({ batch: sent[0].batch, accepted: 0, rejected: [{ id: 1, reason: 'rate_limited' }, { id: 2, reason: 'rate_limited' }] });
  q.enqueue(2, 5, 5, 5); // newer than the refused update of node 2
  timers.advance(100 + 200);
  assert.equal(sent.length, 2);
  assert.deepEqual([...sent[1].ids].sort(), [1, 2]);
  const two = [...sent[1].ids].indexOf(2);
  assert.deepEqual([...sent[1].pos.subarray(3 * two, 3 * two + 3)], [5, 5, 5]);
});

test('a batch that cannot be sent (socket down) is retried when it can', () => {
  const { q, sent, timers, setOnline } = setup({ retryBaseMs: 100 });
  setOnline(false);
  q.enqueue(1, 1, 1, 1);
  timers.advance(200);
  assert.equal(sent.length, 0);
  setOnline(true);
  timers.advance(100 + 200);
  assert.equal(sent.length, 1);
  assert.deepEqual([...sent[0].ids], [1]);
});

test('a retry never overwrites a newer update that was already sent and answered', () => {
  const { q, sent, timers, setOnline } = setup({ retryBaseMs: 100 });
  setOnline(false);
  q.enqueue(1, 1, 1, 1);
  q.flush(); // refused: its retry waits 100 ms
  setOnline(true);
  q.enqueue(1, 5, 5, 5);
  q.flush(); // the newer position goes out and is answered before the retry is due
  q.onAck({ batch: sent[0].batch, accepted: 1, rejected: [] });
  timers.advance(100 + 200);
  assert.equal(sent.length, 1, 'the old position was sent again');
  assert.equal(q.counters.retried, 0);
});

test('each update of a batch counts its own attempts', () => {
  const { q, sent, timers, setOnline } = setup({ batchSize: 2, retryBaseMs: 10, maxAttempts: 2 });
  setOnline(false);
  q.enqueue(1, 1, 1, 1);
  q.flush(); // node 1's first attempt, refused
  q.enqueue(2, 2, 2, 2); // waits for a second update to fill a batch
  timers.advance(10); // node 1's retry fills it: node 1's second attempt, node 2's first
  assert.equal(q.counters.failed, 1, 'node 1 is given up, node 2 is not');
  setOnline(true);
  timers.advance(10 + 200);
  assert.deepEqual(sent.map((b) => [...b.ids]), [[2]]);
  assert.equal(q.counters.failed, 1);
});
