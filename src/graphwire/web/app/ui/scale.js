/**
 * Slider scales. Many physics knobs range over six decades or more (`repel_k` 0 … 1e6 around a
 * default of 3), where a linear slider puts every useful value in its first pixel. Such a knob
 * gets a logarithmic slider: positions 0 … STEPS, position 0 is the minimum exactly, and the rest
 * spread evenly over the decades from `floor` (three decades under the default, or the minimum
 * when that is larger) to the maximum. Knobs with a narrow range keep a linear slider over it.
 * @module ui/scale
 */

/** Positions of a logarithmic slider. */
export const STEPS = 1000;
/** A range spanning at least this ratio gets a logarithmic slider. */
const LOG_SPAN = 100;
/** Decades a logarithmic slider reaches under the default. */
const DECADES_UNDER_DEFAULT = 3;

/**
 * The scale of a numeric setting.
 * @param {{min: number, max: number, default: number, type: string}} s a schema row
 * @returns {{kind: 'linear'|'log', min: number, max: number, floor: number, integer: boolean}}
 */
export function scaleFor(s) {
  const min = s.min ?? 0;
  const max = s.max ?? Math.max(1, 10 * Math.abs(s.default));
  const integer = s.type === 'i64' || s.type === 'i32';
  const d = Math.abs(Number(s.default));
  let floor;
  if (min > 0) floor = min;
  else if (d > 0) floor = Math.min(d, max) / 10 ** DECADES_UNDER_DEFAULT;
  else floor = max / 1e6;
  if (integer) floor = Math.max(floor, 1);
  const log = min >= 0 && max > 0 && floor < max && max / Math.max(floor, min) >= LOG_SPAN
    && (min > 0 || d === 0 || max / d >= LOG_SPAN);
  return { kind: log ? 'log' : 'linear', min, max, floor, integer };
}

/**
 * The value at a slider position (a number in the slider's own units).
 * @param {ReturnType<typeof scaleFor>} sc
 * @param {number} pos
 */
export function valueAt(sc, pos) {
  if (sc.kind === 'linear') return sc.integer ? Math.round(pos) : pos;
  if (pos <= 0) return sc.min;
  if (pos >= STEPS) return sc.max;
  const v = sc.floor * (sc.max / sc.floor) ** (pos / STEPS);
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
  if (value >= sc.max) return STEPS;
  return Math.round((STEPS * Math.log(value / sc.floor)) / Math.log(sc.max / sc.floor));
}
