/**
 * A clear line of sight to a node: of the camera's direction and turns of it (left, right, up,
 * down, nearest first), the first from which no other sphere hides the node, or the one with
 * the fewest in the way. Search and a click in the panel fly the camera to a node: from the
 * direction it had, a sphere in front could cover the very node asked for. Plain arrays, no
 * three.js: tested in Node.
 * @module view/sight
 */

/** The turns tried, as [yaw, pitch] in degrees, nearest to the direction the camera had first. */
const TURNS = (() => {
  const out = [];
  for (const yaw of [0, 20, -20, 40, -40, 65, -65, 90, -90, 130, -130, 180]) {
    for (const pitch of [0, 25, -25, 50, -50]) out.push([yaw, pitch]);
  }
  return out.sort((a, b) => a[0] ** 2 + a[1] ** 2 - (b[0] ** 2 + b[1] ** 2));
})();

const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const unit = (a) => { const n = Math.hypot(...a) || 1; return a.map((v) => v / n); };

/** `v` turned by `deg` degrees about the unit axis `k` (Rodrigues). */
function turn(v, k, deg) {
  const r = (deg * Math.PI) / 180;
  const c = Math.cos(r);
  const s = Math.sin(r);
  const kv = cross(k, v);
  const kd = dot(k, v) * (1 - c);
  return [0, 1, 2].map((i) => v[i] * c + kv[i] * s + k[i] * kd);
}

/**
 * The direction (a unit vector from the node towards the camera) to look at `slot` from
 * `distance` away.
 * @param {Float32Array} positions x, y, z a slot
 * @param {(s: number) => number} radius a slot's sphere radius in world units (0: not drawn)
 * @param {number} slot the node to see
 * @param {number[]} dir the direction the camera has now (from the node towards it)
 * @param {number[]} up the camera's up
 * @param {number} distance how far the camera will be from the node
 * @returns {{dir: number[], hidden: number}} the direction, and how many spheres are in its way
 */
export function clearDirection(positions, radius, slot, dir, up, distance) {
  const d0 = unit(dir);
  let right = cross(d0, up);
  if (Math.hypot(...right) < 1e-6) right = cross(d0, Math.abs(d0[0]) < 0.9 ? [1, 0, 0] : [0, 0, 1]);
  right = unit(right);
  const axis = unit(cross(right, d0));  // the camera's up, square to its direction
  const dirs = TURNS.map(([yaw, pitch]) => {
    const yawed = turn(d0, axis, yaw);
    return unit(turn(yawed, unit(cross(yawed, axis)), pitch));
  });
  const flat = Float64Array.from(dirs.flat());
  const hidden = new Int32Array(dirs.length);
  const o = 3 * slot;
  const [tx, ty, tz] = [positions[o], positions[o + 1], positions[o + 2]];
  const own = radius(slot);
  const n = positions.length / 3;
  for (let s = 0; s < n; s++) {
    const r = radius(s);
    if (s === slot || !(r > 0)) continue;
    const vx = positions[3 * s] - tx;
    const vy = positions[3 * s + 1] - ty;
    const vz = positions[3 * s + 2] - tz;
    const v2 = vx * vx + vy * vy + vz * vz;
    const reach = r + 0.5 * own;  // a sphere this near the line of sight covers the node's middle
    if (v2 > (distance + reach) ** 2) continue;  // farther than the camera: behind it
    // a sphere overlapping the node hides part of it from every side of it: no turn helps
    // much, and counting it would swing the camera a quarter turn for a neighbour
    if (v2 < (r + own) ** 2) continue;
    for (let i = 0, j = 0; i < hidden.length; i++, j += 3) {
      const t = vx * flat[j] + vy * flat[j + 1] + vz * flat[j + 2];
      if (t <= 0 || t >= distance) continue;  // behind the node, or behind the camera
      if (v2 - t * t < reach * reach) hidden[i] += 1;
    }
  }
  let best = 0;
  for (let i = 1; i < dirs.length && hidden[best] > 0; i++) if (hidden[i] < hidden[best]) best = i;
  return { dir: dirs[best], hidden: hidden[best] };
}
