/**
 * Slider scales. Many physics knobs range over six decades or more (`repel_k` 0 … 1e6 around a
 * default of 3), where a linear slider puts every useful value in its first pixel. Such a knob
 * gets a logarithmic slider: positions 0 … STEPS, position 0 is 0 exactly (off) where the
 * minimum is 0, and the rest spread evenly over the decades from `floor` (two decades under the
 * default, or the minimum when that is larger) to `top` (two decades over it, or the maximum
 * when that is smaller): a
 * slider a hundred pixels wide gives a person a few percent a pixel around the default, not a
 * leap to 1e5 for a small drag (which wrecks a layout every viewer shares). The value box beside
 * it takes the whole range. Knobs with a narrow range keep a linear slider over it.
 * @module ui/scale
 */

/** Positions of a logarithmic slider. */
export const STEPS = 1000;
/** A range spanning at least this ratio gets a logarithmic slider. */
const LOG_SPAN = 100;
/** Decades a logarithmic slider reaches under and over the default. */
const DECADES_AROUND_DEFAULT = 2;

/**
 * The scale of a numeric setting.
 * @param {{min: number, max: number, default: number, type: string}} s a schema row
 * @returns {{kind: 'linear'|'log', min: number, max: number, floor: number, top: number,
 *   integer: boolean}}
 */
export function scaleFor(s) {
  const min = s.min ?? 0;
  const max = s.max ?? Math.max(1, 10 * Math.abs(s.default));
  const integer = s.type === 'i64' || s.type === 'i32';
  const d = Math.abs(Number(s.default));
  const around = 10 ** DECADES_AROUND_DEFAULT;
  let floor;
  if (d > 0) floor = Math.max(min, Math.min(d, max) / around);
  else floor = Math.max(min, max / 1e6);
  if (integer) floor = Math.max(floor, 1);
  const log = min >= 0 && max > 0 && floor < max && max / Math.max(floor, min) >= LOG_SPAN
    && (min > 0 || d === 0 || max / d >= LOG_SPAN);
  const top = d > 0 ? Math.min(max, +(d * around).toPrecision(12)) : max;  // 1e-6 · 100: 1e-4
  return { kind: log ? 'log' : 'linear', min, max, floor, top, integer };
}

/**
 * The value at a slider position (a number in the slider's own units).
 * @param {ReturnType<typeof scaleFor>} sc
 * @param {number} pos
 */
export function valueAt(sc, pos) {
  if (sc.kind === 'linear') return sc.integer ? Math.round(pos) : pos;
  if (pos <= 0) return sc.min > 0 ? sc.floor : sc.min;  // 0: off, where off is allowed
  if (pos >= STEPS) return sc.top;
  const v = sc.floor * (sc.top / sc.floor) ** (pos / STEPS);
  if (sc.integer) return Math.round(v);
  return +v.toPrecision(3); // a value a person can read back and type
}

/**
 * The slider position that shows a value (the nearest one; values under the floor show at 0).
 * @param {ReturnType<typeof scaleFor>} sc
 * @param {number} value
 */
export function positionOf(sc, value) {
  if (sc.kind === 'linear') return value;
  if (!(value > sc.min) || value < sc.floor) return 0;
  if (value >= sc.top) return STEPS;
  return Math.round((STEPS * Math.log(value / sc.floor)) / Math.log(sc.top / sc.floor));
}
