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

/** HSL (h in turns) to [r, g, b]. */
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

/** Colour for a shortest-path distance in [0, 1] of the largest finite one: warm near, cool far. */
export function distanceColor(k) {
  const t = Math.sqrt(Math.max(0, Math.min(1, k)));
  const h = (1.13 - 0.5 * t) % 1; // yellow-orange near the source, through red, to violet far
  return hsl(h, 0.85, 0.64 - 0.22 * t);
}

/** Node radius for a degree (world units), before the global size setting. */
export function sizeForDegree(degree) {
  return 0.3 + 0.2 * Math.sqrt(degree);
}
