/**
 * The graph as the page holds it: nodes in render slots, edges, degrees, neighbours, and
 * communities (Louvain) for colouring. Topology changes (`graph_changed`) are applied
 * in place: new nodes take new slots at the end, removed nodes leave an empty slot (hidden), so
 * the GPU buffers keep their layout and nothing is reloaded.
 * @module view/graph_model
 */

export const NO_ID = 0xffffffff;

export class GraphModel {
  constructor() {
    this.clear();
  }

  clear() {
    /** @type {({id:number, key:string, label:string, type:string, metadata:object}|null)[]} */
    this.nodes = [];
    this.slotOf = new Map(); // id -> slot
    this.slotOfKey = new Map(); // key -> slot
    this.edges = new Map(); // "a:b" (ids, a < b) -> {source, target, weight, type}
    this.adjacency = []; // slot -> Set of slots
    this.version = 0;
    this.epoch = null;
  }

  /** Replace everything with a `/api/graph/data` body. */
  load(data) {
    this.clear();
    this.epoch = data.epoch;
    this.topologyVersion = data.topologyVersion;
    for (const n of data.nodes) this.addNode(n);
    for (const e of data.edges) this.addEdge(e);
    this.version += 1;
  }

  addNode(n) {
    if (this.slotOf.has(n.id)) return this.slotOf.get(n.id);
    const slot = this.nodes.length;
    this.nodes.push({
      id: n.id, key: n.key, label: n.label ?? n.key, type: n.type || 'knowledge', metadata: n.metadata || {},
      x: n.x, y: n.y, z: n.z,
    });
    this.slotOf.set(n.id, slot);
    this.slotOfKey.set(n.key, slot);
    this.adjacency.push(new Set());
    return slot;
  }

  removeNode(id) {
    const slot = this.slotOf.get(id);
    if (slot === undefined) return;
    for (const other of this.adjacency[slot]) {
      this.adjacency[other].delete(slot);
      this.edges.delete(edgeKey(id, this.nodes[other].id));
    }
    this.adjacency[slot].clear();
    this.slotOfKey.delete(this.nodes[slot].key);
    this.slotOf.delete(id);
    this.nodes[slot] = null;
  }

  addEdge(e) {
    const s = this.slotOf.get(e.source);
    const t = this.slotOf.get(e.target);
    if (s === undefined || t === undefined || s === t) return;
    const a = Math.min(e.source, e.target);
    const b = Math.max(e.source, e.target);
    this.edges.set(edgeKey(a, b), { source: a, target: b, weight: e.weight ?? 1, type: e.type });
    this.adjacency[s].add(t);
    this.adjacency[t].add(s);
  }

  removeEdge(source, target) {
    const a = Math.min(source, target);
    const b = Math.max(source, target);
    this.edges.delete(edgeKey(a, b));
    const s = this.slotOf.get(a);
    const t = this.slotOf.get(b);
    if (s !== undefined && t !== undefined) {
      this.adjacency[s].delete(t);
      this.adjacency[t].delete(s);
    }
  }

  /** A node's label, type or metadata changed (graphwire's `updated` extension); its slot,
   * id and position stay. */
  updateNode(n) {
    const slot = this.slotOf.get(n.id);
    if (slot === undefined) return;
    const node = this.nodes[slot];
    node.label = n.label ?? n.key;
    node.type = n.type || node.type;
    node.metadata = n.metadata || {};
    aliasCache.delete(node);
    this.names = null;
  }

  /** Apply a `graph_changed` message that carries the change (not `refetch`). */
  applyChange(msg) {
    const removed = msg.removed || { nodes: [], edges: [] };
    const added = msg.added || { nodes: [], edges: [] };
    const updated = msg.updated || { nodes: [], edges: [] };
    for (const [a, b] of removed.edges || []) this.removeEdge(a, b);
    for (const id of removed.nodes || []) this.removeNode(id);
    for (const n of added.nodes || []) this.addNode(n);
    for (const n of updated.nodes || []) this.updateNode(n);
    for (const e of [...(added.edges || []), ...(updated.edges || [])]) this.addEdge(e);
    this.topologyVersion = msg.topologyVersion;
    this.version += 1;
  }

  get slotCount() { return this.nodes.length; }
  get nodeCount() { return this.slotOf.size; }
  get edgeCount() { return this.edges.size; }

  /**
   * What a node stands for in a vault: `page` (a note, or any node of another source), or, for
   * a placeholder (a name linked to that has no page), `tag` when only tags name it and
   * `unwritten` when a link does.
   * @param {number} slot
   * @returns {'page'|'tag'|'unwritten'}
   */
  role(slot) {
    const n = this.nodes[slot];
    if (!n || !n.metadata.placeholder) return 'page';
    for (const other of this.adjacency[slot]) {
      if (this.edges.get(edgeKey(n.id, this.nodes[other].id))?.type !== 'tag') return 'unwritten';
    }
    return this.adjacency[slot].size ? 'tag' : 'unwritten';
  }

  /** Node id shown by each slot (NO_ID where the slot is empty). */
  idOfSlot() {
    const out = new Uint32Array(this.nodes.length);
    this.nodes.forEach((n, s) => { out[s] = n ? n.id : NO_ID; });
    return out;
  }

  /** Edges as pairs of slots (for the index buffer of the edge lines). */
  edgeSlots() {
    const out = new Uint32Array(this.edges.size * 2);
    let k = 0;
    for (const e of this.edges.values()) {
      out[k++] = this.slotOf.get(e.source);
      out[k++] = this.slotOf.get(e.target);
    }
    return out;
  }

  degree(slot) {
    return this.adjacency[slot] ? this.adjacency[slot].size : 0;
  }

  /**
   * Communities by Louvain modularity optimisation (local moving, then aggregation, until a
   * level merges nothing). Label propagation, used before, let one label flood a small dense
   * graph (the karate club came out as one colour). Returns a community index per slot,
   * numbered by size with the largest first (-1 for empty slots).
   */
  communities(maxSweeps = 10) {
    const n = this.nodes.length;
    // Level 0: one vertex per slot, unit edge weights, as CSR (offsets, targets, weights).
    let off = new Int32Array(n + 1);
    for (let s = 0; s < n; s++) off[s + 1] = off[s] + (this.nodes[s] && this.adjacency[s] ? this.adjacency[s].size : 0);
    let tgt = new Int32Array(off[n]);
    let wt = new Float64Array(off[n]).fill(1);
    for (let s = 0, e = 0; s < n; s++) if (this.nodes[s] && this.adjacency[s]) for (const t of this.adjacency[s]) tgt[e++] = t;
    // Weight inside each vertex (twice the edges a community has inside): it counts in the
    // vertex's degree but moves with it.
    let inner = new Float64Array(n);
    const member = new Int32Array(n);
    for (let s = 0; s < n; s++) member[s] = s;
    for (;;) {
      const v = off.length - 1;
      const k = new Float64Array(v);
      let m2 = 0;
      for (let i = 0; i < v; i++) {
        k[i] = inner[i];
        for (let e = off[i]; e < off[i + 1]; e++) k[i] += wt[e];
        m2 += k[i];
      }
      if (m2 === 0) break;
      const comm = new Int32Array(v);
      const tot = new Float64Array(v);
      for (let i = 0; i < v; i++) { comm[i] = i; tot[i] = k[i]; }
      const wTo = new Float64Array(v); // weight from the vertex to each community (scratch)
      const touched = new Int32Array(v);
      let moved = false;
      for (let sweep = 0; sweep < maxSweeps; sweep++) {
        let changed = 0;
        for (let i = 0; i < v; i++) {
          if (k[i] === 0) continue;
          let nt = 0;
          for (let e = off[i]; e < off[i + 1]; e++) {
            const c = comm[tgt[e]];
            if (wTo[c] === 0) touched[nt++] = c;
            wTo[c] += wt[e];
          }
          const own = comm[i];
          tot[own] -= k[i];
          let best = own;
          let bestGain = wTo[own] - tot[own] * k[i] / m2;
          for (let t = 0; t < nt; t++) {
            const c = touched[t];
            const gain = wTo[c] - tot[c] * k[i] / m2;
            if (gain > bestGain + 1e-12) { best = c; bestGain = gain; }
          }
          for (let t = 0; t < nt; t++) wTo[touched[t]] = 0;
          tot[best] += k[i];
          if (best !== own) { comm[i] = best; changed += 1; moved = true; }
        }
        if (!changed) break;
      }
      if (!moved) break;
      // Aggregate: one vertex per community, edge weights summed between communities.
      const renum = new Int32Array(v).fill(-1);
      let nc = 0;
      for (let i = 0; i < v; i++) if (renum[comm[i]] < 0) renum[comm[i]] = nc++;
      const next = Array.from({ length: nc }, () => new Map());
      const nextInner = new Float64Array(nc);
      for (let i = 0; i < v; i++) {
        const a = renum[comm[i]];
        nextInner[a] += inner[i];
        for (let e = off[i]; e < off[i + 1]; e++) {
          const b = renum[comm[tgt[e]]];
          if (a !== b) next[a].set(b, (next[a].get(b) || 0) + wt[e]);
          else nextInner[a] += wt[e];
        }
      }
      off = new Int32Array(nc + 1);
      for (let a = 0; a < nc; a++) off[a + 1] = off[a] + next[a].size;
      tgt = new Int32Array(off[nc]);
      wt = new Float64Array(off[nc]);
      for (let a = 0, e = 0; a < nc; a++) for (const [b, w] of next[a]) { tgt[e] = b; wt[e++] = w; }
      inner = nextInner;
      for (let s = 0; s < n; s++) member[s] = renum[comm[member[s]]];
    }
    const sizes = new Map();
    for (let s = 0; s < n; s++) if (this.nodes[s]) sizes.set(member[s], (sizes.get(member[s]) || 0) + 1);
    const index = new Map();
    // Number communities by size, largest first, so the largest get the most distinct colours.
    [...sizes.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).forEach(([l], i) => index.set(l, i));
    const out = new Int32Array(n);
    for (let s = 0; s < n; s++) out[s] = this.nodes[s] ? index.get(member[s]) : -1;
    return out;
  }

  /**
   * The alias through which a node matches `text`, when its key and label do not (a search
   * result says so), as the page writes it, or null.
   */
  aliasMatched(slot, text) {
    const n = this.nodes[slot];
    const needle = text.trim().toLowerCase();
    if (!n || !needle) return null;
    const g = nameMatch(n, needle);
    if (!g || !ALIAS_GRADES.includes(g)) return null;  // found by its name, or not at all
    const at = aliasesOf(n).findIndex((a) => ALIAS_GRADES[grade(a, needle)] === g);
    return at < 0 ? null : findAliases(n.metadata, false)[at];
  }

  /**
   * The node a name written in a page stands for (`[[Name]]`): the one whose key, label or
   * alias is that whole name, in any case, among `near` first (the page's own links), then
   * anywhere unless `anywhere` is false; -1 when there is none.
   * @param {string} name
   * @param {Iterable<number>} [near] slots to look among first
   */
  named(name, near = [], anywhere = true) {
    const needle = String(name).trim().toLowerCase();
    if (!needle) return -1;
    const whole = (s) => Boolean(this.nodes[s]) && nameMatch(this.nodes[s], needle) >= WHOLE_ALIAS;
    for (const s of near) if (whole(s)) return s;
    if (!anywhere) return -1;
    // every whole name and alias, lower-cased, built once a version (a panel asks often)
    if (!this.names || this.namesVersion !== this.version) {
      this.names = new Map();
      this.namesVersion = this.version;
      const add = (text, s) => { if (!this.names.has(text)) this.names.set(text, s); };
      const byShortest = this.nodes.map((_, s) => s).filter((s) => this.nodes[s])
        .sort((a, b) => String(this.nodes[a].label).length - String(this.nodes[b].label).length || a - b);
      for (const s of byShortest) {
        add(this.nodes[s].key.toLowerCase(), s);
        add(String(this.nodes[s].label).toLowerCase(), s);
      }
      for (const s of byShortest) for (const alias of aliasesOf(this.nodes[s])) add(alias, s);
    }
    return this.names.get(needle) ?? -1;
  }

  /**
   * Nodes whose key, label or alias (a vault page's `alias`/`aliases` property) matches `text`
   * (case-insensitive), best first: the whole name, the whole alias, the name's start, a word of
   * the name, an alias's start or word, then anywhere in the name or an alias ("link" finds
   * *Link notes* and *Internal links* before *Tabs*, whose alias is "linked pane"); within
   * each, the shortest label first. Returns slots.
   */
  search(text, limit = 10) {
    const needle = text.trim().toLowerCase();
    if (!needle) return [];
    // one bucket a grade, each holding at most `keep` (a short needle matches much of a large
    // graph: "a" in 100,000 nodes); a bucket's shortest labels come from the nodes it holds
    const keep = 20 * limit;
    const buckets = Array.from({ length: WHOLE_NAME + 1 }, () => []);
    for (let s = 0; s < this.nodes.length; s++) {
      const n = this.nodes[s];
      if (!n) continue;
      const g = nameMatch(n, needle);
      if (g && buckets[g].length < keep) buckets[g].push(s);
    }
    const shown = (s) => String(this.nodes[s].label).length;
    const out = [];
    for (let g = WHOLE_NAME; g > 0 && out.length < limit; g--) {
      out.push(...buckets[g].sort((a, b) => shown(a) - shown(b) || a - b));
    }
    return out.slice(0, limit);
  }
}

const aliasCache = new WeakMap(); // node object -> its aliases (updateNode forgets them)
/** The key of the edge between two node ids in `edges` ("a:b", the smaller id first). */
function edgeKey(a, b) {
  return a < b ? `${a}:${b}` : `${b}:${a}`;
}

const NONE = [];
// How well a node matches a search, best last (0: not at all).
const IN_ALIAS = 1;
const IN_NAME = 2;
const ALIAS_WORD = 3;
const ALIAS_START = 4;
const NAME_WORD = 5;
const NAME_START = 6;
const WHOLE_ALIAS = 7;
const WHOLE_NAME = 8;
const WORD_START = /[\s/_.:()[\]-]/;

/** Where `needle` is in a (lower-cased) name: 4 whole, 3 its start, 2 a word's start, 1 inside, 0 not. */
function grade(name, needle) {
  const at = name.indexOf(needle);
  if (at < 0) return 0;
  if (at === 0) return name.length === needle.length ? 4 : 3;
  for (let i = at; i >= 0; i = name.indexOf(needle, i + 1)) {
    if (WORD_START.test(name[i - 1])) return 2;
  }
  return 1;
}

const NAME_GRADES = [0, IN_NAME, NAME_WORD, NAME_START, WHOLE_NAME];
const ALIAS_GRADES = [0, IN_ALIAS, ALIAS_WORD, ALIAS_START, WHOLE_ALIAS];

/** How well `needle` matches a node's key, label or aliases (the grades above). */
function nameMatch(node, needle) {
  let best = NAME_GRADES[Math.max(grade(node.key.toLowerCase(), needle),
    grade(String(node.label).toLowerCase(), needle))];
  for (const alias of aliasesOf(node)) {
    if (best === WHOLE_NAME) break;
    best = Math.max(best, ALIAS_GRADES[grade(alias, needle)]);
  }
  return best;
}

/** A node's other names, lower-cased: the items of its `alias`/`aliases` metadata (any case). */
function aliasesOf(node) {
  let out = aliasCache.get(node);
  if (out === undefined) {
    out = findAliases(node.metadata);
    aliasCache.set(node, out);
  }
  return out;
}

/** The items of a node's `alias`/`aliases` metadata (any case of the key), lower-cased or not. */
function findAliases(meta, lower = true) {
  if (!meta || typeof meta !== 'object') return NONE;
  const out = [];
  for (const [k, v] of Object.entries(meta)) {
    if (!/^alias(es)?$/i.test(k)) continue;
    for (const item of Array.isArray(v) ? v : [v]) {
      if (typeof item === 'string') out.push(lower ? item.toLowerCase() : item);
    }
  }
  return out.length ? out : NONE;
}
