/**
 * Node colours and sizes: by community (label propagation) or by type, agents always distinct;
 * by shortest-path distance when a source is set; size grows with the square root of degree.
 * @module view/colors
 */

/** `#rrggbb` to [r, g, b] in 0..1. */
export function hexToRgb(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(String(hex).trim());
  const v = m ? parseInt(m[1], 16) : 0x888888;
  return [((v >> 16) & 255) / 255, ((v >> 8) & 255) / 255, (v & 255) / 255];
}

/** HSL (h in turns, s and l in 0..1) to [r, g, b]. */
export function hsl(h, s, l) {
  const f = (n) => {
    const k = (n + h * 12) % 12;
    const a = s * Math.min(l, 1 - l);
    return l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
  };
  return [f(0), f(8), f(4)];
}

/** A well-spread palette colour for community `i` (golden-angle hues). */
export function communityColor(i) {
  if (i < 0) return [0.5, 0.5, 0.5];
  const h = (0.55 + i * 0.381966) % 1;
  const l = i < 12 ? 0.62 : 0.5 + 0.1 * ((i * 7) % 3) / 2;
  return hsl(h, 0.72, l);
}

const DISTANCE_STOPS = [
  [1.0, 0.93, 0.45], [1.0, 0.62, 0.2], [0.93, 0.3, 0.33], [0.7, 0.22, 0.58], [0.38, 0.25, 0.72], [0.16, 0.27, 0.55],
];

/** Colour for a shortest-path distance rank in [0, 1]: bright yellow near the source, through
 * orange, red and purple, to deep blue far away. */
export function distanceColor(k) {
  const t = Math.max(0, Math.min(1, k)) * (DISTANCE_STOPS.length - 1);
  const i = Math.min(DISTANCE_STOPS.length - 2, Math.floor(t));
  const f = t - i;
  const a = DISTANCE_STOPS[i];
  const b = DISTANCE_STOPS[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

/**
 * Node radius for a degree (world units), before the global size setting: a leaf 0.5, and the
 * volume grows with the degree (the radius with its cube root: degree 10 0.85, 100 1.6, 350
 * 2.3), so a hub stands out without swallowing the neighbours around it.
 */
export function sizeForDegree(degree) {
  return 0.2 + 0.3 * Math.cbrt(degree);
}
