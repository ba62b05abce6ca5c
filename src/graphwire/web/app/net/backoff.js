/**
 * Reconnect delays (docs/protocol.md §10): exponential from 1 s doubling to 30 s, with full jitter
 * (a uniform draw in [0, cap)), so clients that lost the same server do not return in step.
 * @module net/backoff
 */

/**
 * The delay before reconnect attempt `attempt` (0 for the first).
 * @param {number} attempt
 * @param {{baseMs?: number, maxMs?: number, random?: () => number}} [options]
 * @returns {number} milliseconds in [0, min(maxMs, baseMs × 2^attempt))
 */
export function backoffDelay(attempt, { baseMs = 1000, maxMs = 30000, random = Math.random } = {}) {
  return random() * backoffCap(attempt, { baseMs, maxMs });
}

/** The upper bound of {@link backoffDelay} for an attempt. */
export function backoffCap(attempt, { baseMs = 1000, maxMs = 30000 } = {}) {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
}
