// Slider scales: logarithmic where a knob's range spans decades, linear where it is narrow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { positionOf, scaleFor, STEPS, valueAt } from '../app/ui/scale.js';

const row = (min, max, def, type = 'f64') => ({ min, max, default: def, type });

test('narrow ranges keep a linear slider over the range', () => {
  for (const r of [row(0.2, 1, 1), row(0, 2, 1), row(0, 1, 0.5)]) {
    const sc = scaleFor(r);
    assert.equal(sc.kind, 'linear');
    assert.equal(valueAt(sc, 0.7), 0.7);
    assert.equal(positionOf(sc, 0.7), 0.7);
  }
});

test('a six-decade range is logarithmic, two decades either side of the default', () => {
  const sc = scaleFor(row(0, 1e6, 3)); // repel_k
  assert.equal(sc.kind, 'log');
  assert.equal(valueAt(sc, 0), 0, 'position 0 is the minimum exactly (off)');
  // the track ends at 300, not 1e6: a short drag on a narrow slider must not leap five decades
  assert.equal(valueAt(sc, STEPS), 300);
  assert.equal(positionOf(sc, 1e5), STEPS);
  const p = positionOf(sc, 3);
  assert.ok(Math.abs(p - STEPS / 2) <= 1, `default at ${p}`);
  assert.ok(Math.abs(valueAt(sc, p) - 3) / 3 < 0.02, 'the default reads back within 2%');
  // each step about 1 %: a 10 % change is ten steps
  assert.ok(valueAt(sc, p + 10) / valueAt(sc, p) < 1.11);
  // equal steps are equal ratios: each tenth of the track multiplies the value alike
  const r1 = valueAt(sc, 300) / valueAt(sc, 200);
  const r2 = valueAt(sc, 800) / valueAt(sc, 700);
  assert.ok(Math.abs(r1 / r2 - 1) < 0.02, `${r1} vs ${r2}`);
});

test('values round-trip through positions to within one step', () => {
  const sc = scaleFor(row(1e-6, 1e7, 1e4)); // max_velocity
  assert.equal(sc.kind, 'log');
  assert.equal(sc.floor, 100);
  assert.equal(sc.top, 1e6);
  const ratio = (sc.top / sc.floor) ** (1 / STEPS);
  for (const v of [101, 317, 1e4, 5e5]) {
    const back = valueAt(sc, positionOf(sc, v));
    assert.ok(back / v < ratio * 1.01 && v / back < ratio * 1.01, `${v} -> ${back}`);
  }
  assert.equal(positionOf(sc, 1e8), STEPS);
  assert.equal(positionOf(sc, 1e-6), 0);
  assert.equal(valueAt(sc, 0), 100, 'a minimum above 0 is no "off": the track starts at its floor');
});

test('a zero default spans six decades under the maximum', () => {
  const sc = scaleFor(row(0, 100, 0)); // temperature
  assert.equal(sc.kind, 'log');
  assert.ok(Math.abs(sc.floor - 1e-4) < 1e-12);
  assert.equal(positionOf(sc, 0), 0);
});

test('integer knobs step by whole numbers', () => {
  const sc = scaleFor(row(1, 100000, 100, 'i64')); // iterations
  assert.equal(sc.kind, 'log');
  for (let p = 0; p <= STEPS; p += 37) assert.ok(Number.isInteger(valueAt(sc, p)));
  assert.equal(valueAt(sc, positionOf(sc, 100)), 100);
});
