// A clear line of sight: the camera turns as little as it must so no sphere hides the node.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { clearDirection } from '../app/view/sight.js';

const UP = [0, 1, 0];
const angle = (a, b) => (Math.acos(Math.max(-1, Math.min(1, a[0] * b[0] + a[1] * b[1] + a[2] * b[2]))) * 180) / Math.PI;

test('a clear view keeps the direction the camera had', () => {
  const positions = Float32Array.of(0, 0, 0, 50, 0, 0, 0, 0, -30);  // beside and behind
  const { dir, hidden } = clearDirection(positions, () => 2, 0, [0, 0, 1], UP, 100);
  assert.equal(hidden, 0);
  assert.ok(angle(dir, [0, 0, 1]) < 1e-6);
});

test('a sphere in front makes the camera turn, a little, to where it hides nothing', () => {
  const positions = Float32Array.of(0, 0, 0, 0.5, 0, 20);  // the node, and a sphere in front
  const { dir, hidden } = clearDirection(positions, () => 2, 0, [0, 0, 1], UP, 100);
  assert.equal(hidden, 0);
  assert.ok(angle(dir, [0, 0, 1]) > 5 && angle(dir, [0, 0, 1]) <= 30, angle(dir, [0, 0, 1]));
  // from there the sphere is off the line of sight by more than its radius
  const t = 0.5 * dir[0] + 20 * dir[2];
  assert.ok(Math.sqrt(0.25 + 400 - t * t) > 2);
});

test('spheres behind the camera, or not drawn, hide nothing', () => {
  const positions = Float32Array.of(0, 0, 0, 0, 0, 150, 0, 0, 20);
  const radius = (s) => (s === 2 ? 0 : 2);
  assert.equal(clearDirection(positions, radius, 0, [0, 0, 1], UP, 100).hidden, 0);
  assert.ok(angle(clearDirection(positions, radius, 0, [0, 0, 1], UP, 100).dir, [0, 0, 1]) < 1e-6);
});

test('inside a crowd: the direction with the fewest spheres in the way', () => {
  // a shell of spheres around the node, thinner on one side (+x)
  const pts = [0, 0, 0];
  for (let i = 0; i < 400; i++) {
    const z = 1 - (2 * (i + 0.5)) / 400;
    const r = Math.sqrt(1 - z * z);
    const phi = i * 2.399963;
    const p = [r * Math.cos(phi), r * Math.sin(phi), z];
    if (p[0] > 0.8 && i % 4) continue;
    pts.push(...p.map((v) => v * 30));
  }
  const positions = Float32Array.from(pts);
  const radius = () => 3;
  const ahead = clearDirection(positions, radius, 0, [0, 0, 1], UP, 100);
  const best = clearDirection(positions, radius, 0, [1, 0, 0], UP, 100);
  assert.ok(best.hidden <= ahead.hidden);
  assert.ok(angle(ahead.dir, [1, 0, 0]) < 60, `turned to ${ahead.dir}`);  // towards the thin side
  // looking straight down works too (up and the direction in line)
  assert.ok(Number.isFinite(clearDirection(positions, radius, 0, [0, 1, 0], UP, 100).dir[0]));
});
