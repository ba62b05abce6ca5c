/**
 * Labels with a level of detail: the hovered, selected and source nodes, the few nodes
 * nearest the camera (within `labelDistance`), then those that look biggest on screen, as many
 * as fit without overlapping: a pool of DOM elements positioned over the canvas, never one per
 * node.
 * @module ui/labels
 */

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
    const { x, y, depth } = view.project();
    const chosen = [];
    const seen = new Set();
    for (const s of always) {
      if (s >= 0 && model.nodes[s] && Number.isFinite(x[s]) && !seen.has(s)) { chosen.push([s, true]); seen.add(s); }
    }
    for (const s of path) {
      if (model.nodes[s] && Number.isFinite(x[s]) && !seen.has(s)) { chosen.push([s, false]); seen.add(s); }
    }
    if (this.enabled) {
      // the nearest nodes on screen, within the label distance from the camera
      const near = []; // the `nearest` smallest depths, kept sorted (one pass, no full sort)
      const far = this.maxDistance > 0 ? this.maxDistance : Infinity;
      for (let s = 0; s < x.length; s++) {
        if (!(depth[s] < far) || seen.has(s)) continue;
        if (x[s] < 0 || y[s] < 0 || x[s] > view.width || y[s] > view.height) continue;
        if (near.length === this.nearest && depth[s] >= depth[near[near.length - 1]]) continue;
        let i = near.length;
        while (i > 0 && depth[near[i - 1]] > depth[s]) i -= 1;
        near.splice(i, 0, s);
        if (near.length > this.nearest) near.pop();
      }
      for (const s of near) { chosen.push([s, false]); seen.add(s); }
      // then the nodes that look biggest on screen (hubs, and whatever is near): an overview
      // names its landmarks, and zooming in names more, as long as labels do not overlap
      for (const s of this.biggest(view, model, x, y, depth, seen)) chosen.push([s, false]);
    }
    // place in priority order, skipping a label that would overlap one already placed
    const boxes = [];
    let used = 0;
    for (const [s, strong] of chosen) {
      const text = model.nodes[s].label;
      const r = view.pixelRadius(s, depth[s]);
      const left = x[s] + r + 3;
      const top = y[s] - 8;
      // (heights: the font size times the page's line height, 1.4)
      const box = [left, top, left + this.width(text, strong), top + (strong ? 19 : 16)];
      if (!strong && boxes.some((b) => box[0] < b[2] && box[2] > b[0] && box[1] < b[3] && box[3] > b[1])) continue;
      boxes.push(box);
      const el = this.element(used++);
      el.textContent = text;
      el.className = strong ? 'label strong' : 'label';
      el.style.transform = `translate(${left}px, ${top}px)`;
      el.hidden = false;
    }
    for (let i = used; i < this.pool.length; i++) this.pool[i].hidden = true;
  }

  /**
   * Up to `this.hubs` × 4 slots on screen, biggest apparent sphere first (the placing step
   * keeps those that do not overlap, so a crowded overview shows few and a close view many).
   */
  biggest(view, model, x, y, depth, seen) {
    const want = this.hubs * 4;
    const f = view.pixelsPerUnit();
    const slots = [];
    const score = [];
    for (let s = 0; s < x.length; s++) {
      if (seen.has(s) || !Number.isFinite(x[s]) || x[s] < 0 || y[s] < 0 || x[s] > view.width || y[s] > view.height) continue;
      slots.push(s);
      score.push(view.pixelRadius(s, depth[s], f) + 1e-3 * model.degree(s));
    }
    let threshold = -Infinity;
    if (slots.length > want) {  // the want-th biggest, from a sample when there are many
      const step = Math.max(1, Math.floor(slots.length / 2000));
      const sample = [];
      for (let i = 0; i < score.length; i += step) sample.push(score[i]);
      sample.sort((a, b) => b - a);
      threshold = sample[Math.min(sample.length - 1, Math.floor((want / slots.length) * sample.length))];
    }
    const top = [];
    for (let i = 0; i < slots.length; i++) if (score[i] >= threshold) top.push(i);
    top.sort((a, b) => score[b] - score[a]);
    return top.slice(0, want).map((i) => slots[i]);
  }
}
