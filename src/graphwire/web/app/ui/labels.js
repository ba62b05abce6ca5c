/**
 * Labels with a level of detail: only the hovered, selected and source nodes, and the few
 * nodes nearest the camera (within `labelDistance`), get a label: a pool of DOM elements
 * positioned over the canvas, never one per node.
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
      // and the biggest hubs on screen, so an overview names its landmarks
      const hubs = [];
      for (let s = 0; s < x.length; s++) {
        if (seen.has(s) || !Number.isFinite(x[s]) || x[s] < 0 || y[s] < 0 || x[s] > view.width || y[s] > view.height) continue;
        const d = model.degree(s);
        if (hubs.length < this.hubs || d > hubs[hubs.length - 1][1]) {
          hubs.push([s, d]);
          hubs.sort((a, b) => b[1] - a[1]);
          if (hubs.length > this.hubs) hubs.pop();
        }
      }
      for (const [s] of hubs) chosen.push([s, false]);
    }
    // place in priority order, skipping a label that would overlap one already placed
    const boxes = [];
    let used = 0;
    for (const [s, strong] of chosen) {
      const text = model.nodes[s].label;
      const r = view.pixelRadius(s, depth[s]);
      const left = x[s] + r + 3;
      const top = y[s] - 8;
      const box = [left, top, left + text.length * (strong ? 7.5 : 6.3), top + (strong ? 17 : 14)];
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
}
