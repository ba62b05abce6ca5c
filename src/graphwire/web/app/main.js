/**
 * The page: wires the connection, the decode worker, the settings store, the BatchQueue, the
 * renderer and the panels together, and exposes `window.graphwire` for tests (docs/web-client.md).
 *
 * A position frame flows: WebSocket (ArrayBuffer) → worker (decode, scatter by id into render
 * slots) → main thread (`Float32Array` transferred) → `Renderer.applyPositions` (copied into the
 * instanced attribute) → GPU (interpolated in the vertex shader).
 * @module main
 */
import * as THREE from 'three';
import { Connection } from './net/connection.js';
import { BatchQueue, PIN, RELEASE } from './net/batch_queue.js';
import { SettingsStore } from './net/settings_store.js';
import { GraphModel } from './view/graph_model.js';
import { Renderer } from './view/renderer.js';
import { communityColor, distanceColor, hexToRgb, sizeForDegree } from './view/colors.js';
import { buildSettingsPanel } from './ui/settings_panel.js';
import { Labels } from './ui/labels.js';
import { median } from './ui/stats.js';

const params = new URLSearchParams(location.search);
const $ = (sel) => document.querySelector(sel);
const R = 'visualisation.rendering.';

const model = new GraphModel();
const view = new Renderer($('#scene'), {
  nodes: params.get('nodes') || undefined,
  antialias: params.has('aa') ? params.get('aa') !== '0' : undefined,
});
const labels = new Labels($('#labels'));
const worker = new Worker(new URL('./decode_worker.js', import.meta.url), { type: 'module' });
const FORMATS = ['q', 'v2', 'v1'];
const format = params.get('format') || 'q';
if (!FORMATS.includes(format)) console.warn(`graphwire: ?format=${format} is not one of ${FORMATS.join(', ')}; using q`);
const conn = new Connection({
  baseUrl: location.origin,
  format: FORMATS.includes(format) ? format : 'q',
  // every snapshot the server streams (1 ms is clamped to its fastest, 1000/maxUpdateRate),
  // so a drag shows at the stream's full rate; ?interval= paces the page slower
  intervalMs: params.has('interval') ? Number(params.get('interval')) : 1,
  token: params.get('token') || undefined,
});
const settings = new SettingsStore({ send: (bytes) => conn.send(bytes) });
const queue = new BatchQueue({
  send: (bytes) => conn.send(bytes),
  epoch: () => conn.epoch ?? 0,
  isAgent: (id) => model.nodes[model.slotOf.get(id)]?.type === 'agent',
  isKnown: (id) => model.slotOf.has(id),
  bounds: () => settings.get('visualisation.graphs.logseq.physics.bounds_size') ?? Infinity,
});

const app = {
  framesApplied: 0,
  lastSeq: 0,
  settled: false,
  decodeTimes: [],
  applyTimes: [],
  selected: -1, // slot (the shared shortest-path source, or what this page just asked for)
  asked: [], // [{source, at}]: shortest-path sources this page asked for, until one arrives
  hovered: -1,
  shownSlot: -1,  // the node whose panel is shown
  neighboursShown: 0,  // how many of its neighbours the panel lists (a page more a click; reset on a new selection)
  sssp: null, // {source, distance, parent} by node id
  ssspReached: null,
  pinned: new Map(), // slot -> [x, y, z]
  path: [], // slots on the highlighted path (hovered node back to the source)
  ssspSorted: null,
  colorMode: 'community',
  communities: new Int32Array(0),
  errors: [],
  fitted: false,
  typeCount: 0, // how many node types the graph holds
  lastFit: 0,
  userMoved: false,  // the user turned, zoomed or flew the camera: stop following the layout
  settledFit: false,
  bytesWindow: [],
  framesWindow: [],
  frameSizes: [], // bytes of the last 50 position frames applied
  framesOfAnotherEpoch: 0, // dropped: they came before their graph
  bytesPerNode: 0,
};

// the legend of distance colours: the same ramp (and grey) the nodes are painted with
const UNREACHED = [0.2, 0.22, 0.27];
const css = (rgb) => `rgb(${rgb.map((c) => Math.round(255 * c)).join(', ')})`;
$('#legend-bar').style.background = `linear-gradient(to right, ${[0, 0.25, 0.5, 0.75, 1]
  .map((k) => css(distanceColor(k))).join(', ')})`;
$('.legend i.unreached').style.background = css(UNREACHED);

// -- the connection -------------------------------------------------------------------------
const statusEl = $('[data-testid="status"]');
const FOLLOW_MS = 1000;  // how often the camera re-frames a layout that is still unfolding
const ASK_MS = 3000;  // how long paths of an older ask are taken as older than the newest ask
const PLACEHOLDER_SIZE = 0.75;  // a tag's or an unwritten page's sphere, to a page's
const PLACEHOLDER_DIM = 0.55;  // how far its colour fades towards the background
/** What the panel says a node is, when it is not a page. */
const ROLE_TEXT = {
  tag: (n) => `a tag, on ${n} page${n === 1 ? '' : 's'}`,
  unwritten: (n) => `not written yet: linked from ${n} page${n === 1 ? '' : 's'}`,
};
view.controls.addEventListener('start', () => {
  app.userMoved = true;
  view.flight = null;  // the user's hand wins over a glide under way (a fit, a fly-to)
});
conn.on('state', ({ state, reason }) => {
  statusEl.textContent = state;
  statusEl.dataset.state = state;
  statusEl.title = reason || '';
  // a lost connection says so in the middle of the screen until it is back
  const notice = $('#loading');
  if (state === 'reconnecting') {
    notice.textContent = 'connection lost: reconnecting…';
    notice.hidden = false;
  } else if (state === 'connected' && app.framesApplied > 0) {
    notice.hidden = true;
  }
  if (state === 'disconnected' && (reason === 'unauthorized' || reason === 'token refused')) {
    notice.hidden = true;
    askForToken(Boolean(params.get('token')));
  }
});

/**
 * The server wants a token this page does not have (or refused the one it has): say so in the
 * middle of the screen, with a field that reopens the page with `?token=`.
 */
function askForToken(hadOne) {
  $('#notice-title').textContent = hadOne ? 'This token was refused' : 'This server needs a token';
  $('#notice-text').textContent = hadOne
    ? 'The server did not accept the token in the address. Enter the right one to open the graph.'
    : 'It was started with --token. Enter it here, or open the page as /?token=… to connect.';
  $('#notice').hidden = false;
  $('#token-form input').focus();
}
$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const next = new URLSearchParams(location.search);
  next.set('token', $('#token-form input').value);
  location.search = next.toString();
});
conn.on('established', ({ message }) => {
  settings.expect(message.settings);
  if (!settings.revision) settings.sync(0).catch(() => {});
});
conn.on('graph', (data) => {
  if (!data.nodes?.length) $('#loading').hidden = true;  // an empty graph: nothing to wait for
  const newEpoch = model.epoch !== null && model.epoch !== data.epoch;
  if (newEpoch) worker.postMessage({ type: 'reset' });
  model.load(data);
  relayout(true);
  for (const slot of [...app.pinned.keys()]) if (!model.nodes[slot]) app.pinned.delete(slot);
  if (newEpoch) { app.pinned.clear(); select(-1, false); }
  else if (app.sssp && app.selected < 0) {
    // the shared paths came before the graph they belong to: show whose they are now
    app.selected = model.slotOf.get(app.sssp.source) ?? -1;
    countReached();
    recolor();
    showSelection();
  }
  updateStatus(performance.now());  // the epoch and counts now, not at the next 500 ms tick
});
conn.on('graph_changed', (msg) => {
  if (msg.refetch) return; // the connection refetches /api/graph/data
  model.applyChange(msg);
  relayout(false);
});
conn.on('positions_ack', (ack) => queue.onAck(ack));
conn.on('binary', (buf) => {
  const kind = new Uint8Array(buf, 0, 1)[0];
  const now = performance.now();
  app.bytesWindow.push([now, buf.byteLength]);
  if (kind === 0x10) {
    settings.handleFrame(new Uint8Array(buf)).catch((err) => reportError(err));
    conn.settingsRevision = settings.revision;
  } else {
    // A position frame of another epoch than the graph on screen (the server restarted or
    // reloaded, and the new graph's body is still on its way) would land on the wrong nodes:
    // it is dropped. The server sends a keyframe after the graph body (docs/protocol.md §7),
    // and the worker asks for one if a delta names a keyframe it does not hold.
    if (kind <= 0x03 && model.epoch !== null && buf.byteLength >= 8
        && new DataView(buf).getUint16(2, true) !== (model.epoch & 0xffff)) {
      app.framesOfAnotherEpoch += 1;
      return;
    }
    worker.postMessage({ type: 'frame', buf }, [buf]);
  }
});
conn.on('error', (err) => {
  if (err && err.code !== 'graph_load_failed') return;
  reportError(new Error(err.message));
});
settings.on('change', () => { conn.settingsRevision = settings.revision; });
settings.on('error', (e) => { if (e.code === 'digest_mismatch') console.warn(e.message); });

function reportError(err) {
  app.errors.push(String(err && err.message || err));
  console.warn('graphwire:', err);
}

/** The graph changed shape: tell the worker and the GPU buffers. */
function relayout(fresh) {
  view.setCount(model.slotCount);
  view.setEdges(model.edgeSlots());
  worker.postMessage({ type: 'layout', idOfSlot: model.idOfSlot() });
  // new nodes start where the REST body or graph_changed put them, until a frame moves them
  model.nodes.forEach((n, s) => {
    if (n && n.x !== undefined && (fresh || !view.next[3 * s] && !view.next[3 * s + 1] && !view.next[3 * s + 2])) {
      view.placeNow(s, [n.x, n.y, n.z], false);
    }
  });
  view.markPositions();
  app.communities = model.communities();
  // colour by type says nothing when every node is of one type
  const types = new Set(model.nodes.filter(Boolean).map((n) => n.type));
  const byType = $('#color-mode option[value=type]');
  byType.disabled = types.size < 2;
  byType.textContent = types.size < 2 ? `type (all ${[...types][0] ?? 'one type'})` : 'type';
  app.typeCount = types.size;
  // the selection panel explains the dimmed nodes where there are any (a vault's tags and links)
  $('#sel-dim-note').hidden = !model.nodes.some((n) => n && n.metadata.placeholder);
  markAgentPhysics();
  recolor();
  if (fresh) app.fitted = false;
  $('#nodes').textContent = model.nodeCount;
  $('#edges').textContent = model.edgeCount;
  if (app.selected >= 0 && !model.nodes[app.selected]) select(-1, false);
  else if (app.selected >= 0) showSelection();
}

worker.onmessage = ({ data }) => {
  if (data.type === 'positions') onPositions(data);
  else if (data.type === 'sssp') onSssp(data);
  else if (data.type === 'need_keyframe') conn.sendJson({ type: 'request_keyframe' });
  else if (data.type === 'error') reportError(new Error(`${data.code}: ${data.message}`));
};

function onPositions(msg) {
  if (msg.pos.length !== 3 * model.slotCount || model.slotCount === 0) return;
  const t0 = performance.now();
  if (msg.partial) {  // nodes no frame has placed yet stay where graph_changed put them
    const { pos } = msg;
    for (let i = 0; i < pos.length; i++) if (Number.isNaN(pos[i])) pos[i] = view.next[i];
  }
  view.applyPositions(msg.pos, app.pinned);
  const applyMs = performance.now() - t0;
  // the array was copied into the GPU attribute: hand it back for the next frame
  worker.postMessage({ type: 'recycle', buf: msg.pos.buffer }, [msg.pos.buffer]);
  // A relayout re-shows the last frame on new slots; it is a new frame only when that frame
  // was never applied (it came before the graph body: a settled server sends one keyframe)
  if (msg.relayout && app.framesApplied > 0 && msg.seq === app.lastSeq) return;
  push(app.applyTimes, applyMs);
  push(app.decodeTimes, msg.decodeMs);
  push(app.frameSizes, msg.bytes);
  app.framesApplied += 1;
  if (conn.state === 'connected') $('#loading').hidden = true;
  app.lastSeq = msg.seq;
  conn.lastSeq = msg.seq;
  app.settled = msg.settled;
  if (msg.nodes) app.bytesPerNode = 0.8 * app.bytesPerNode + 0.2 * (msg.bytes / msg.nodes);
  app.framesWindow.push(t0);
  $('[data-testid="frames"]').textContent = app.framesApplied;
  // the layout woke (a setting, a new node): follow it again, unless the user took the camera
  if (!msg.settled && app.settledFit) app.settledFit = false;
  if (!app.fitted) {
    view.fit(0, fitMargins());
    app.fitted = true;
    app.lastFit = t0;
  } else if (!app.userMoved && !app.settledFit && t0 - app.lastFit > FOLLOW_MS) {
    // until the user takes the camera, follow the layout as it unfolds and settles
    view.fit(FOLLOW_MS * 0.8, fitMargins());
    app.lastFit = t0;
    if (msg.settled) app.settledFit = true;
  }
}

/**
 * What the panels cover of the canvas, for the camera's fit: the status bar; a panel that
 * spans the window's width (a phone's search bar and settings) takes its band off the top or
 * the bottom, and one that spans its height (the side panel with a selection or open settings)
 * its strip off that side; corner panels on a wide window leave the middle free, and the
 * camera steps back to clear them.
 */
function fitMargins() {
  const w = window.innerWidth;
  const h = window.innerHeight;
  const box = (sel) => $(sel).getBoundingClientRect();
  const wide = (r) => r.width > 0.6 * w;
  const tall = (r) => r.height >= 0.6 * h && !wide(r);
  const top = box('#top');
  const side = box('#side');
  const lowest = Math.min(box('#status').top, wide(side) && side.height > 0 ? side.top : h);
  const corner = (r) => r.height > 0 && !wide(r) && !tall(r);
  const strip = (r, onLeft) => (tall(r) && (r.left + r.right) / 2 < w / 2 === onLeft
    ? (onLeft ? r.right : w - r.left) + 8 : 0);
  return {
    top: Math.max(40, wide(top) ? top.bottom + 8 : 0),
    bottom: Math.max(56, h - lowest + 8),
    left: Math.max(24, strip(top, true), strip(side, true)),
    right: Math.max(24, strip(top, false), strip(side, false)),
    panels: [top, side].filter(corner).map((r) => [r.left - 4, r.top - 4, r.right + 4, r.bottom + 4]),
  };
}

function push(arr, v) {
  arr.push(v);
  if (arr.length > 50) arr.shift();
}

/** How many nodes on screen the shared paths reach (null: no paths). */
function countReached() {
  const sssp = app.sssp;
  if (!sssp) { app.ssspReached = null; return; }
  let reached = 0;
  for (const s of model.slotOf.values()) {
    const id = model.nodes[s].id;
    if (id < sssp.distance.length && Number.isFinite(sssp.distance[id])) reached += 1;
  }
  app.ssspReached = reached;
}

/**
 * Shortest paths from the source every viewer shares (§ set_sssp_source): this page's selection
 * follows it, so colours that another viewer's click brought always come with the panel that
 * says whose paths they are, and its clear button. Paths of a source this page asked for before
 * its newest ask (clicks in quick succession) are skipped for a few seconds: the newest answer is
 * on its way. Any other viewer's source is the server's newest word, and is shown.
 */
function onSssp(msg) {
  const latest = app.asked.at(-1);
  const echo = latest && msg.source !== latest.source && performance.now() - latest.at < ASK_MS
    && app.asked.some((a) => a.source === msg.source);
  if (echo) return;  // an older ask of ours, answered after a newer one: the newer is coming
  app.asked = [];
  app.selected = msg.source === null ? -1 : model.slotOf.get(msg.source) ?? -1;
  app.sssp = msg.source === null ? null : msg;
  app.ssspSorted = app.sssp ? Float32Array.from(msg.distance.filter(Number.isFinite)).sort() : null;
  countReached();
  updatePath();
  recolor();
  showSelection();
}

// -- colours, sizes and the highlighted path ------------------------------------------------------
function recolor() {
  const base = settings.get(R + 'nodes.size') ?? 4;
  const kc = hexToRgb(settings.get(R + 'nodes.knowledgeColor') ?? '#4fc3f7');
  const ac = hexToRgb(settings.get(R + 'nodes.agentColor') ?? '#ffb74d');
  const sssp = app.sssp;
  const onPath = new Set(app.path);
  const bg = view.background.toArray();
  view.setSizeUnit(base * sizeForDegree(1));  // a leaf's size: the unit of the pixel floor
  for (let s = 0; s < model.slotCount; s++) {
    const n = model.nodes[s];
    if (!n) { view.size[s] = 0; continue; }
    const emphasis = s === app.selected ? 1.7 : s === app.hovered ? 1.45 : onPath.has(s) ? 1.3 : 1;
    // a name with no page (a tag, or a link not written yet) is drawn smaller and dimmer
    const page = model.role(s) === 'page';
    view.size[s] = base * sizeForDegree(model.degree(s)) * emphasis * (page ? 1 : PLACEHOLDER_SIZE);
    let c;
    if (sssp) {
      const d = n.id < sssp.distance.length ? sssp.distance[n.id] : Infinity;
      c = Number.isFinite(d) ? distanceColor(rankOf(d)) : UNREACHED;
      if (n.id === sssp.source) c = [1, 1, 1];
    } else if (n.type === 'agent') c = ac;
    else c = app.colorMode === 'community' ? communityColor(app.communities[s]) : kc;
    if (!page && !(sssp && n.id === sssp.source)) c = c.map((v, i) => v + (bg[i] - v) * PLACEHOLDER_DIM);
    view.color.set(c, 3 * s);
  }
  view.markColors();
  view.markSizes();
}

/** Where a distance ranks among the reached nodes (0 nearest, 1 farthest): colours spread evenly. */
function rankOf(d) {
  const sorted = app.ssspSorted;
  if (!sorted || sorted.length < 2) return 0;
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < d) lo = mid + 1;
    else hi = mid;
  }
  return lo / (sorted.length - 1);
}

function pathTo(slot) {
  const sssp = app.sssp;
  const pairs = [];
  if (!sssp || slot < 0 || !model.nodes[slot]) return pairs;
  let id = model.nodes[slot].id;
  for (let guard = 0; guard < 100000; guard++) {
    const parent = id < sssp.parent.length ? sssp.parent[id] : -1;
    if (parent < 0) break;
    const a = model.slotOf.get(id);
    const b = model.slotOf.get(parent);
    if (a === undefined || b === undefined) break;
    pairs.push(a, b);
    id = parent;
  }
  return pairs;
}

function updatePath() {
  const pairs = pathTo(app.hovered >= 0 ? app.hovered : -1);
  app.path = [...new Set(pairs)];
  view.setPath(Uint32Array.from(pairs));
}

// -- selection, hover, search ------------------------------------------------------------------------
function select(slot, tell = true) {
  app.selected = slot;
  if (tell) {
    const source = slot >= 0 ? model.nodes[slot].id : null;
    app.asked.push({ source, at: performance.now() });
    conn.sendJson({ type: 'set_sssp_source', source });
  }
  recolor();
  showSelection();
}

const BY_NAME = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
// a hub's neighbours come a page at a time (thousands of buttons at once would stall the panel)
const NEIGHBOURS_A_PAGE = 300;

function showSelection() {
  const panel = $('#selection');
  const slot = app.selected;
  view.mark(slot);
  // a newly selected node's panel is read from its name down (a phone's panel scrolls)
  if (slot !== app.shownSlot) {
    $('#side').scrollTop = 0;
    app.neighboursShown = NEIGHBOURS_A_PAGE;
  }
  app.shownSlot = slot;
  if (slot < 0 || !model.nodes[slot]) { panel.hidden = true; return; }
  const n = model.nodes[slot];
  panel.hidden = false;
  $('#sel-label').textContent = n.label;
  $('#sel-key').textContent = n.key === n.label ? '' : n.key;  // the same twice says nothing
  $('#sel-type').textContent = n.type;
  $('#sel-type').parentElement.hidden = app.typeCount < 2;  // one type for all: says nothing
  $('#sel-degree').textContent = model.degree(slot);
  $('#sel-reached').textContent = app.ssspReached === null ? '…' : `${app.ssspReached} of ${model.nodeCount}`;
  showPinned(slot);
  const meta = $('#sel-meta');
  const role = model.role(slot);
  const empty = (v) => v === '' || v === null || (Array.isArray(v) && v.length === 0);
  const rows = Object.entries(n.metadata)
    .filter(([k, v]) => !(k === 'placeholder' && role !== 'page') && !empty(v));
  if (role !== 'page') rows.unshift(['is', ROLE_TEXT[role](model.degree(slot))]);
  meta.replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement('tr');
    const a = document.createElement('td');
    const b = document.createElement('td');
    a.textContent = k;
    b.append(...metadataValue(slot, k, v));
    tr.append(a, b);
    return tr;
  }));
  const list = $('#sel-neighbours');
  // pages first, then names with no page (tags, links not written yet), each by name as a
  // person reads it (case aside, "9" before "10")
  const unwritten = new Map([...model.adjacency[slot]].map((s) => [s, model.role(s) === 'page' ? 0 : 1]));
  const page = (s) => unwritten.get(s);
  const nb = [...unwritten.keys()].sort((a, b) => page(a) - page(b)
    || BY_NAME.compare(String(model.nodes[a].label), String(model.nodes[b].label)));
  list.replaceChildren(...nb.slice(0, app.neighboursShown).map((s) => {
    const li = document.createElement('li');
    const btn = nodeLink(s, model.nodes[s].label, !page(s));
    btn.dataset.testid = 'neighbour';
    li.append(btn);
    return li;
  }));
  const more = $('#sel-more');
  const left = Math.max(nb.length - app.neighboursShown, 0);
  more.hidden = left <= 0;
  more.textContent = `show ${Math.min(left, NEIGHBOURS_A_PAGE)} more (${left} not shown)`;
}

$('#sel-more').addEventListener('click', () => {
  app.neighboursShown += NEIGHBOURS_A_PAGE;
  showSelection();
});

/** A button naming a node (dimmed when it has no page): a click selects it and flies there. */
function nodeLink(slot, text = model.nodes[slot].label, isPage = model.role(slot) === 'page') {
  const btn = document.createElement('button');
  btn.type = 'button';
  btn.className = isPage ? 'link' : 'link unwritten';
  btn.textContent = text;
  btn.title = model.nodes[slot].key;
  btn.addEventListener('click', () => { select(slot); flyTo(slot); });
  return btn;
}

/** The page a link's inside names and the text it shows: `Name|shown`, `Name#Heading` (as the vault reader cuts it). */
function linkParts(inside) {
  const bar = inside.indexOf('|');
  const target = (bar < 0 ? inside : inside.slice(0, bar)).split('#')[0].replace(/\\$/, '').trim();
  return [target, bar < 0 ? inside : inside.slice(bar + 1)];
}

// `[[Name]]`, or a Markdown link to a web page: `[text](https://…)`
const LINK_IN_TEXT = /\[\[([^[\]]+)\]\]|\[([^[\]]+)\]\((https?:\/\/[^\s()]+)\)/g;

/**
 * A metadata value as the panel shows it: lists as a person writes them (aliases, tags), other
 * objects as JSON; a `[[Name]]` in a text, or an item of a list that names one of the node's
 * neighbours (a tag), is a link to that node when the graph has it (its own links first), and
 * a Markdown link to a web page opens it in a new tab.
 */
function metadataValue(slot, key, value) {
  const near = model.adjacency[slot];
  if (Array.isArray(value) && value.every((x) => typeof x !== 'object')) {
    const linked = !/^alias(es)?$/i.test(key);  // a page's other names are itself
    return value.flatMap((item, i) => {
      const text = String(item);
      const [target, shown] = linkParts(text.replace(/^\[\[(.*)\]\]$/, '$1'));
      const to = linked ? model.named(target, near, false) : -1;
      return [...(i ? [', '] : []), to >= 0 && to !== slot ? nodeLink(to, shown) : text];
    });
  }
  if (typeof value === 'object' && value !== null) return [JSON.stringify(value)];
  const out = [];
  const text = String(value);
  let at = 0;
  for (const m of text.matchAll(LINK_IN_TEXT)) {
    out.push(text.slice(at, m.index));
    if (m[1] !== undefined) {
      const [target, shown] = linkParts(m[1]);
      const to = model.named(target, near);
      out.push(to >= 0 && to !== slot ? nodeLink(to, shown) : m[0]);
    } else {
      const a = document.createElement('a');
      a.href = m[3];
      a.textContent = m[2];
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      out.push(a);
    }
    at = m.index + m[0].length;
  }
  out.push(text.slice(at));
  return out.filter((part) => part !== '');
}

/**
 * Fly to a node for a close look: near enough to tell it from its neighbours (the nearer, the
 * smaller it is), no farther than its neighbours' median distance calls for (a hub's size would
 * take the camera past the whole graph), and never farther than the whole graph's view; from
 * the camera's direction, turned as little as it takes for no other sphere to hide the node.
 */
function flyTo(slot) {
  app.userMoved = true;
  const at = view.positionOf(slot);
  const p = new THREE.Vector3();
  const reach = median([...model.adjacency[slot]].map((o) => view.positionOf(o, p).distanceTo(at)));
  let distance = 40 + 30 * view.size[slot];
  if (reach > 0) distance = Math.min(distance, Math.max(6 * reach, 60));
  if (view.fitDistance) distance = Math.min(distance, 0.7 * view.fitDistance);
  view.flyTo(at, distance, 700, view.clearSight(slot, distance));
}

const search = $('[data-testid="search"]');
const results = $('#search-results');
let matches = [];
let active = 0;
/** The matches as a list; `typed`: the query was just typed, so say when nothing matches. */
function renderMatches(typed = false) {
  results.replaceChildren(...matches.map((s, i) => {
    const li = document.createElement('li');
    const n = model.nodes[s];
    li.textContent = n.label;
    const alias = model.aliasMatched(s, search.value);
    if (alias !== null || String(n.label).toLowerCase() !== n.key.toLowerCase()) {
      const small = document.createElement('small');
      small.textContent = alias !== null ? `alias: ${alias}` : n.key;
      li.append(' ', small);
    }
    li.className = i === active ? 'active' : '';
    li.addEventListener('mousedown', (ev) => { ev.preventDefault(); choose(s); });
    return li;
  }));
  const query = search.value.trim();
  if (typed && !matches.length && query) {
    // say so, rather than showing nothing (Enter then does nothing)
    const li = document.createElement('li');
    li.className = 'none';
    li.dataset.testid = 'no-match';
    li.textContent = `no node matches “${query}”`;
    results.append(li);
  }
  results.hidden = results.children.length === 0;
}
function choose(slot) {
  select(slot);
  flyTo(slot);
  matches = [];
  renderMatches();
  search.blur();
}
search.addEventListener('input', () => {
  matches = model.search(search.value, 10);
  active = 0;
  renderMatches(true);
});
search.addEventListener('keydown', (ev) => {
  if (ev.key === 'ArrowDown') { active = Math.min(matches.length - 1, active + 1); renderMatches(); ev.preventDefault(); }
  else if (ev.key === 'ArrowUp') { active = Math.max(0, active - 1); renderMatches(); ev.preventDefault(); }
  else if (ev.key === 'Enter') {
    if (!matches.length) matches = model.search(search.value, 10);
    if (matches.length) choose(matches[Math.min(active, matches.length - 1)]);
    else renderMatches(true);
  } else if (ev.key === 'Escape') {
    // leave the box, and only the box: the page's own Escape (clear the selection) must not
    // see this key once the box has lost the focus
    matches = [];
    renderMatches();
    search.blur();
    ev.stopPropagation();
  }
});
search.addEventListener('blur', () => { results.hidden = true; });
search.addEventListener('focus', () => { results.hidden = results.children.length === 0; });
$('#sel-clear').addEventListener('click', () => { select(-1); search.value = ''; });
$('#fit-view').addEventListener('click', wholeGraph);

/** The agent graph's physics drives no node while the graph holds none: its heading says so. */
function markAgentPhysics() {
  const summary = document.querySelector('summary[data-prefix="visualisation.graphs.visionflow.physics."]');
  if (!summary) return;  // the panel is not built yet: loadSchema calls this again
  const agents = model.nodes.some((n) => n && n.type === 'agent');
  summary.textContent = `${summary.dataset.title}${agents ? '' : ' (no agent nodes yet)'}`;
}

const TEXT_TYPES = new Set(['text', 'number', 'search', 'password', 'email', 'url']);
/** Whether keys typed go into this element (a text box), not to the page (a slider, a box). */
function isTextField(el) {
  return el?.tagName === 'TEXTAREA' || (el?.tagName === 'INPUT' && TEXT_TYPES.has(el.type));
}

/** Back to the whole graph (the button, or f): and follow the layout again while it moves. */
function wholeGraph() {
  app.userMoved = false;
  app.settledFit = app.settled;
  app.lastFit = performance.now();
  view.fit(600, fitMargins());
}
$('#sel-release').addEventListener('click', () => release(app.selected));
document.addEventListener('keydown', (ev) => {
  // keys typed in a field (the search box, a setting's value) are the field's
  const typing = isTextField(document.activeElement);
  if (ev.key === 'Escape' && !typing) select(-1);
  if (ev.key === '/' && !typing) { ev.preventDefault(); search.focus(); }
  if ((ev.key === 'f' || ev.key === 'Home') && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
    wholeGraph();
  }
});
$('#color-mode').addEventListener('change', (ev) => { app.colorMode = ev.target.value; recolor(); });

// -- pointer: hover, click, drag, double-click -------------------------------------------------------
const canvas = view.renderer.domElement;
let pointer = null; // {x, y} of the last move
let press = null; // {slot, x, y, dragging, plane}
const raycaster = new THREE.Raycaster();

function rayPoint(ev, plane) {
  const rect = canvas.getBoundingClientRect();
  const ndc = new THREE.Vector2(((ev.clientX - rect.left) / rect.width) * 2 - 1, -((ev.clientY - rect.top) / rect.height) * 2 + 1);
  raycaster.setFromCamera(ndc, view.camera);
  return raycaster.ray.intersectPlane(plane, new THREE.Vector3());
}

canvas.addEventListener('pointermove', (ev) => {
  pointer = { x: ev.offsetX, y: ev.offsetY };
  if (!press || press.slot < 0) return;
  if (!press.dragging && Math.hypot(ev.offsetX - press.x, ev.offsetY - press.y) > 4) {
    press.dragging = true;
    app.userMoved = true;  // the camera must not re-frame under a node being dragged
    view.controls.enabled = false;
    const p = view.positionOf(press.slot);
    const normal = view.camera.getWorldDirection(new THREE.Vector3());
    press.plane = new THREE.Plane().setFromNormalAndCoplanarPoint(normal, p);
  }
  if (press.dragging) {
    const hit = rayPoint(ev, press.plane);
    if (hit) drag(press.slot, hit);
  }
});
canvas.addEventListener('pointerleave', () => {
  pointer = null;
  if (app.hovered >= 0 && !press) {
    app.hovered = -1;
    updatePath();
    recolor();
  }
});
canvas.addEventListener('pointerdown', (ev) => {
  if (ev.button !== 0) return;
  const slot = view.pick(ev.offsetX, ev.offsetY);
  press = { slot, x: ev.offsetX, y: ev.offsetY, dragging: false };
  if (slot >= 0) {
    view.controls.enabled = false;
    canvas.setPointerCapture(ev.pointerId);
  }
});
canvas.addEventListener('pointerup', (ev) => {
  if (!press) return;
  const p = press;
  press = null;
  view.controls.enabled = true;
  if (p.dragging) {
    const hit = rayPoint(ev, p.plane);
    if (hit) drag(p.slot, hit);
    queue.flush();
    return;
  }
  if (Math.hypot(ev.offsetX - p.x, ev.offsetY - p.y) <= 4) select(p.slot >= 0 ? p.slot : -1, true);
});
canvas.addEventListener('dblclick', (ev) => {
  const slot = view.pick(ev.offsetX, ev.offsetY);
  if (slot < 0) return;
  // a pin this page does not know of (made before a reload, or on another screen) is released
  // where the node is: the server holds it there
  if (!app.pinned.has(slot)) {
    const p = view.positionOf(slot);
    app.pinned.set(slot, [p.x, p.y, p.z]);
  }
  release(slot);
});

function drag(slot, p) {
  const xyz = [p.x, p.y, p.z];
  app.pinned.set(slot, xyz);
  view.placeNow(slot, xyz);
  queue.enqueue(model.nodes[slot].id, p.x, p.y, p.z, PIN);
  if (slot === app.selected) showPinned(slot);
}

function release(slot) {
  if (slot < 0 || !app.pinned.has(slot)) return;
  const [x, y, z] = app.pinned.get(slot);
  app.pinned.delete(slot);
  queue.enqueue(model.nodes[slot].id, x, y, z, RELEASE);
  queue.flush();
  if (slot === app.selected) showPinned(slot);
}

/** The panel's pin line and button (a drag moves them often: nothing else is redrawn). */
function showPinned(slot) {
  $('#sel-pinned').hidden = !app.pinned.has(slot);
  $('#sel-release').hidden = !app.pinned.has(slot);
}

// -- settings ------------------------------------------------------------------------------------------
const RENDER_KEYS = new Set(['nodes.size', 'nodes.knowledgeColor', 'nodes.agentColor']);
function applyRendering(path, value) {
  const key = path.slice(R.length);
  if (key === 'background') { view.background.set(value); document.body.style.background = value; }
  else if (key === 'edges.opacity') view.edgeUniforms.uOpacity.value = value;
  else if (key === 'edges.color') view.edgeUniforms.uColor.value.set(value);
  else if (key === 'sssp.pathColor') view.pathUniforms.uColor.value.set(value);
  else if (key === 'interpolate') view.interpolate = Boolean(value);
  else if (key === 'nodes.labels') labels.enabled = Boolean(value);
  else if (key === 'nodes.labelDistance') labels.maxDistance = value;
  else if (RENDER_KEYS.has(key)) recolor();
}
settings.on('change', ({ path, value }) => { if (path.startsWith(R)) applyRendering(path, value); });

async function loadSchema() {
  const resp = await fetch('/api/settings?schema=1', { headers: conn.headers() });
  if (!resp.ok) throw new Error(`GET /api/settings?schema=1: HTTP ${resp.status}`);
  const doc = await resp.json();
  buildSettingsPanel($('#settings-body'), doc.schema, settings);
  markAgentPhysics();
  for (const s of doc.schema) if (s.path.startsWith(R)) applyRendering(s.path, settings.get(s.path) ?? s.default);
}

// -- labels, status bar, the render loop ---------------------------------------------------------------
let lastLabels = 0;
let lastStatus = 0;
let projected = null;
// ?draw=0 keeps everything running but the drawing itself (the browser bench uses it to measure
// decoding without a software rasteriser competing for the CPU)
const drawing = params.get('draw') !== '0';
function frame(now) {
  requestAnimationFrame(frame);
  if (drawing) view.render(now);
  if (pointer && !press && now - (app.lastPick || 0) > 50 && model.slotCount) {
    app.lastPick = now;
    projected = view.project();
    const slot = view.pick(pointer.x, pointer.y, projected);
    canvas.style.cursor = slot >= 0 ? 'pointer' : 'default';
    if (slot !== app.hovered) {
      app.hovered = slot;
      updatePath();
      recolor();
    }
    pointer = null;
  }
  if (drawing && now - lastLabels > 100 && model.slotCount) {  // labels are drawing too
    lastLabels = now;
    const source = app.sssp ? model.slotOf.get(app.sssp.source) ?? -1 : -1;
    labels.update(view, model, [app.hovered, app.selected, source], app.path);
  }
  if (now - lastStatus > 500) {
    lastStatus = now;
    updateStatus(now);
  }
}

function updateStatus(now) {
  const cut = now - 2000;
  app.bytesWindow = app.bytesWindow.filter(([t]) => t >= cut);
  app.framesWindow = app.framesWindow.filter((t) => t >= cut);
  const secs = 2;
  $('#fps').textContent = (app.framesWindow.length / secs).toFixed(1);
  $('#kbps').textContent = (app.bytesWindow.reduce((a, [, b]) => a + b, 0) / 1024 / secs).toFixed(1);
  $('#bpn').textContent = app.bytesPerNode.toFixed(2);
  $('#settled').textContent = app.settled ? 'settled' : 'moving';
  $('#epoch').textContent = conn.epoch ?? '–';
  $('#seq').textContent = app.lastSeq;
  $('#decode').textContent = median(app.decodeTimes).toFixed(2);
}

// -- the test hooks (docs/web-client.md) -----------------------------------------------------------------
const keyOf = (slot) => (slot >= 0 && model.nodes[slot] ? model.nodes[slot].key : null);
window.graphwire = {
  get nodeCount() { return model.nodeCount; },
  get edgeCount() { return model.edgeCount; },
  get lastSeq() { return app.lastSeq; },
  get epoch() { return conn.epoch; },
  get selected() { return keyOf(app.selected); },
  get ssspReached() { return app.ssspReached; },
  get pinned() { return [...app.pinned.keys()].map(keyOf); },
  get decodeMs() { return median(app.decodeTimes); },
  get applyMs() { return median(app.applyTimes); },
  get frameBytes() { return median(app.frameSizes); },
  get framesOfAnotherEpoch() { return app.framesOfAnotherEpoch; },
  get framesApplied() { return app.framesApplied; },
  get status() { return conn.state; },
  get format() { return conn.format; },
  get settled() { return app.settled; },
  get queue() { return { ...queue.counters, ...queue.pending }; },
  get settingsRevision() { return settings.revision; },
  get digestMismatches() { return settings.digestMismatches; },
  get errors() { return [...app.errors]; },
  get hovered() { return keyOf(app.hovered); },
  /** The value of a setting as this page holds it. */
  setting(path) { return settings.get(path); },
  /** Select a node by key (as a click would). */
  select(key) { const s = model.slotOfKey.get(key); if (s !== undefined) { select(s); return true; } return false; },
  /** Where a node is drawn now: `{x, y}` in CSS pixels of the canvas, or null. */
  screenOf(key) {
    const s = model.slotOfKey.get(key);
    if (s === undefined) return null;
    const v = view.positionOf(s).project(view.camera);
    const rect = canvas.getBoundingClientRect();
    return { x: rect.left + (v.x + 1) / 2 * rect.width, y: rect.top + (1 - v.y) / 2 * rect.height };
  },
  /** Where the camera is and the point it looks at (world units). */
  camera() { return { position: view.camera.position.toArray(), target: view.controls.target.toArray() }; },
  /** A node's position as shown now (world units). */
  positionOf(key) {
    const s = model.slotOfKey.get(key);
    return s === undefined ? null : view.positionOf(s).toArray();
  },
  /** Where this page pinned a node. */
  pinnedAt(key) { const s = model.slotOfKey.get(key); return app.pinned.get(s) ?? null; },
  /** A node on screen 3 to 6 hops from the shortest-path source, as `{x, y}` (screenshots). */
  farNeighbourOnScreen() {
    if (!app.sssp) return null;
    const { x, y } = view.project();
    const rect = canvas.getBoundingClientRect();
    let best = null;
    for (let s = 0; s < model.slotCount; s++) {
      const hops = pathTo(s).length / 2;
      if (hops < 3 || hops > 6 || !Number.isFinite(x[s])) continue;
      if (x[s] < 380 || x[s] > view.width - 380 || y[s] < 80 || y[s] > view.height - 80) continue;
      if (!best || hops > best.hops || (hops === best.hops && model.degree(s) > best.degree)) {
        best = { hops, degree: model.degree(s), x: rect.left + x[s], y: rect.top + y[s] };
      }
    }
    return best;
  },
  /** Keys of every node (tests pick from them). */
  keys() { return model.nodes.filter(Boolean).map((n) => n.key); },
};

loadSchema().catch((err) => reportError(err));
conn.start();
requestAnimationFrame(frame);
