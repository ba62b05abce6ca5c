/**
 * Labels with a level of detail: the hovered, selected and source nodes, the few nodes
 * nearest the camera (within `labelDistance`), then those that look biggest on screen, as many
 * as fit without overlapping and not hidden behind a nearer sphere: a pool of DOM elements
 * positioned over the canvas, never one per node. The choice ({@link placeLabels}) is a pure
 * function of the view, so it is tested without a page.
 * @module ui/labels
 */

/** Screen cells of the occlusion index, in CSS pixels (a sphere wider than this is listed apart). */
const CELL = 32;

/**
 * @typedef {object} Placed
 * @property {number} slot the labelled slot
 * @property {boolean} strong hovered, selected or source: drawn bold, never left out
 * @property {number} left CSS pixels from the canvas's left edge
 * @property {number} top CSS pixels from its top edge
 */

/**
 * Choose the labels to show and where, in priority order.
 * @param {{project: Function, pixelRadius: Function, pixelsPerUnit: Function, width: number, height: number}} view
 *   the renderer, or anything with its projection
 * @param {{nodes: Array<{label: string}|null>, degree: (slot: number) => number}} model
 * @param {number[]} always slots that always get a label (-1: none)
 * @param {number[]} path slots of the highlighted path (labelled when there is room)
 * @param {{enabled: boolean, nearest: number, hubs: number, maxDistance: number}} opts
 * @param {(text: string, strong: boolean) => number} widthOf a label's width in CSS pixels
 * @returns {Placed[]}
 */
export function placeLabels(view, model, always, path, opts, widthOf) {
  const { x, y, depth } = view.project();
  const f = view.pixelsPerUnit();
  const radius = new Float32Array(x.length).fill(NaN);
  const onScreen = (s) => x[s] >= 0 && y[s] >= 0 && x[s] <= view.width && y[s] <= view.height;
  for (let s = 0; s < x.length; s++) if (Number.isFinite(x[s])) radius[s] = view.pixelRadius(s, depth[s], f);
  const chosen = [];
  const seen = new Uint8Array(x.length);
  for (const s of always) {
    if (s >= 0 && model.nodes[s] && Number.isFinite(x[s]) && !seen[s]) { chosen.push([s, true, false]); seen[s] = 1; }
  }
  for (const s of path) {
    if (model.nodes[s] && Number.isFinite(x[s]) && !seen[s]) { chosen.push([s, false, false]); seen[s] = 1; }
  }
  if (opts.enabled) {
    // the nearest nodes on screen, within the label distance from the camera
    const near = []; // the `nearest` smallest depths, kept sorted (one pass, no full sort)
    const far = opts.maxDistance > 0 ? opts.maxDistance : Infinity;
    for (let s = 0; s < x.length; s++) {
      if (!(depth[s] < far) || seen[s] || !onScreen(s)) continue;
      if (near.length === opts.nearest && depth[s] >= depth[near[near.length - 1]]) continue;
      let i = near.length;
      while (i > 0 && depth[near[i - 1]] > depth[s]) i -= 1;
      near.splice(i, 0, s);
      if (near.length > opts.nearest) near.pop();
    }
    for (const s of near) { chosen.push([s, false, true]); seen[s] = 1; }
    // then the nodes that look biggest on screen (hubs, and whatever is near): an overview
    // names its landmarks, and zooming in names more, as long as labels do not overlap
    for (const s of biggest(model, radius, seen, onScreen, opts.hubs * 4)) chosen.push([s, false, true]);
  }
  // place in priority order, skipping a label that would overlap one already placed, and a
  // landmark whose sphere is behind a nearer one (its label would name the sphere in front)
  const boxes = [];
  const placed = [];
  let hidden = null;
  let smallest = Infinity;  // the smallest landmark: spheres under half its size hide none
  for (const [s, , optional] of chosen) if (optional) smallest = Math.min(smallest, radius[s]);
  for (const [s, strong, optional] of chosen) {
    const text = model.nodes[s].label;
    const left = x[s] + radius[s] + 3;
    const top = y[s] - 8;
    // (heights: the font size times the page's line height, 1.4)
    const box = [left, top, left + widthOf(text, strong), top + (strong ? 19 : 16)];
    if (!strong && boxes.some((b) => box[0] < b[2] && box[2] > b[0] && box[1] < b[3] && box[3] > b[1])) continue;
    if (optional && (hidden ??= coverIndex(x, y, depth, radius, view, smallest / 2))(s)) continue;
    boxes.push(box);
    placed.push({ slot: s, strong, left, top });
  }
  return placed;
}

/**
 * Up to `want` slots on screen, biggest apparent sphere first (the placing step keeps those
 * that do not overlap, so a crowded overview shows few and a close view many).
 */
function biggest(model, radius, seen, onScreen, want) {
  const score = new Float32Array(radius.length).fill(-Infinity);
  let count = 0;
  for (let s = 0; s < radius.length; s++) {
    if (seen[s] || !onScreen(s)) continue;
    score[s] = radius[s] + 1e-3 * model.degree(s);
    count += 1;
  }
  let threshold = -Infinity;
  if (count > want) {  // the want-th biggest, from a sample when there are many
    const step = Math.max(1, Math.floor(count / 2000));
    const sample = [];
    for (let s = 0, k = 0; s < score.length; s++) {
      if (score[s] > -Infinity && k++ % step === 0) sample.push(score[s]);
    }
    sample.sort((a, b) => b - a);
    threshold = sample[Math.min(sample.length - 1, Math.floor((want / count) * sample.length))];
  }
  const top = [];
  for (let s = 0; s < score.length; s++) if (score[s] > -Infinity && score[s] >= threshold) top.push(s);
  top.sort((a, b) => score[b] - score[a]);
  return top.slice(0, want);
}

/**
 * An index of the spheres on screen (slots bucketed by the screen cell of their centre, spheres
 * wider than a cell listed apart) and a test on it: is a slot's centre behind a nearer sphere
 * at least half its size? One pass over the slots, built only when a landmark is placed, and
 * holding only spheres of at least `least` pixels.
 * @returns {(s: number) => boolean}
 */
function coverIndex(x, y, depth, radius, { width, height }, least) {
  const cols = Math.ceil(width / CELL) + 2;  // a ring of cells around the screen
  const rows = Math.ceil(height / CELL) + 2;
  const cellOf = new Int32Array(x.length).fill(-1);
  const start = new Int32Array(cols * rows + 1);
  const big = [];
  for (let s = 0; s < x.length; s++) {
    const r = radius[s];
    if (!(r >= least)) continue;  // off screen, or too small to hide a landmark
    if (r > CELL) {
      if (x[s] + r >= 0 && y[s] + r >= 0 && x[s] - r <= width && y[s] - r <= height) big.push(s);
      continue;
    }
    const cx = Math.floor(x[s] / CELL) + 1;
    const cy = Math.floor(y[s] / CELL) + 1;
    if (cx < 0 || cy < 0 || cx >= cols || cy >= rows) continue;
    cellOf[s] = cy * cols + cx;
    start[cellOf[s] + 1] += 1;
  }
  for (let c = 0; c < cols * rows; c++) start[c + 1] += start[c];
  const items = new Int32Array(start[cols * rows]);
  const fill = start.slice(0, cols * rows);
  for (let s = 0; s < x.length; s++) if (cellOf[s] >= 0) items[fill[cellOf[s]]++] = s;
  const covers = (t, s) => {
    if (t === s || !(depth[t] < depth[s]) || radius[t] < 0.5 * radius[s]) return false;
    const dx = x[t] - x[s];
    const dy = y[t] - y[s];
    return dx * dx + dy * dy < 0.81 * radius[t] * radius[t];  // well inside its disc
  };
  return (s) => {
    if (big.some((t) => covers(t, s))) return true;
    const cx = Math.floor(x[s] / CELL) + 1;
    const cy = Math.floor(y[s] / CELL) + 1;
    for (let j = Math.max(cy - 1, 0); j <= Math.min(cy + 1, rows - 1); j++) {
      for (let i = Math.max(cx - 1, 0); i <= Math.min(cx + 1, cols - 1); i++) {
        const c = j * cols + i;
        for (let k = start[c]; k < start[c + 1]; k++) if (covers(items[k], s)) return true;
      }
    }
    return false;
  };
}

/** The label layer over the canvas: a pool of DOM elements placed by {@link placeLabels}. */
export class Labels {
  /** @param {HTMLElement} root */
  constructor(root, { nearest = 7, hubs = 10 } = {}) {
    this.root = root;
    this.nearest = nearest;
    this.hubs = hubs;
    this.enabled = true;
    this.maxDistance = 250;
    this.pool = [];
    this.widths = new Map();  // measured label widths
    this.measure = null;  // a 2D context to measure them with
  }

  /** A label's width in CSS pixels, as the page's font draws it (measured once a text). */
  width(text, strong) {
    const key = (strong ? '1' : '0') + text;
    let w = this.widths.get(key);
    if (w === undefined) {
      const ctx = this.measure ??= document.createElement('canvas').getContext('2d');
      const family = getComputedStyle(this.root).fontFamily || 'sans-serif';
      ctx.font = strong ? `600 13px ${family}` : `11px ${family}`;
      w = Math.ceil(ctx.measureText(text).width) + 2;
      if (this.widths.size > 20000) this.widths.clear();
      this.widths.set(key, w);
    }
    return w;
  }

  element(i) {
    while (this.pool.length <= i) {
      const el = document.createElement('div');
      el.className = 'label';
      this.root.append(el);
      this.pool.push(el);
    }
    return this.pool[i];
  }

  /**
   * Choose and place labels.
   * @param {import('../view/renderer.js').Renderer} view
   * @param {import('../view/graph_model.js').GraphModel} model
   * @param {number[]} always slots that always get a label (-1: none)
   * @param {number[]} [path] slots of the highlighted path (labelled when there is room)
   */
  update(view, model, always, path = []) {
    const placed = placeLabels(view, model, always, path, this, (text, strong) => this.width(text, strong));
    placed.forEach(({ slot, strong, left, top }, i) => {
      const el = this.element(i);
      el.textContent = model.nodes[slot].label;
      el.className = strong ? 'label strong' : 'label';
      el.style.transform = `translate(${left}px, ${top}px)`;
      el.hidden = false;
    });
    for (let i = placed.length; i < this.pool.length; i++) this.pool[i].hidden = true;
  }
}
