/**
 * Small statistics for the status bar and the test hooks.
 * @module ui/stats
 */

/** Median of numbers (0 for none). */
export function median(values) {
  if (!values.length) return 0;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
