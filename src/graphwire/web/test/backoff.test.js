// Reconnect backoff (docs/protocol.md §10): 1 s doubling to 30 s, full jitter within its bounds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffCap, backoffDelay } from '../app/net/backoff.js';

test('the cap doubles from 1 s and stops at 30 s', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 20, 100].map((a) => backoffCap(a)),
    [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
});

test('full jitter stays within [0, cap) and spreads across it', () => {
  for (let attempt = 0; attempt < 8; attempt++) {
    const cap = backoffCap(attempt);
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < 2000; i++) {
      const d = backoffDelay(attempt);
      assert.ok(d >= 0 && d < cap, `attempt ${attempt}: ${d} outside [0, ${cap})`);
      lo = Math.min(lo, d);
      hi = Math.max(hi, d);
    }
    assert.ok(lo < 0.05 * cap && hi > 0.95 * cap, `attempt ${attempt}: jitter spans only [${lo}, ${hi}]`);
  }
  assert.equal(backoffDelay(3, { random: () => 0 }), 0);
  assert.equal(backoffDelay(3, { random: () => 0.5 }), 4000);
});
