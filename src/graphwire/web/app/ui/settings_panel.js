/**
 * The settings panel, generated from the schema the server serves (`GET /api/settings?schema=1`):
 * every physics parameter of both graphs and the rendering settings, grouped. A number is a
 * slider (`<input type=range data-testid="setting-<path>">`, logarithmic where the range spans
 * decades, see `scale.js`) beside a box to type the exact value (`data-testid="number-<path>"`,
 * with the schema's range), and a reset to default; all bound to the settings store: moving a
 * slider writes the setting (throttled), a typed value is written when committed (Enter or
 * leaving the box), and a change made anywhere moves both as soon as its Delta arrives.
 * @module ui/settings_panel
 */

import { positionOf, scaleFor, STEPS, valueAt } from './scale.js';

const GROUPS = [
  { prefix: 'visualisation.graphs.logseq.physics.', title: 'Knowledge graph physics' },
  { prefix: 'visualisation.graphs.visionflow.physics.', title: 'Agent graph physics' },
  { prefix: 'visualisation.rendering.', title: 'Rendering' },
];
const SEND_EVERY_MS = 80;
/**
 * The physics knobs a person reaches for, first, named for what they do (the setting's own
 * name and help under each); the rest of a physics group (the solver, cooling, bounds and the
 * model's switches) waits under "more", closed.
 */
const EVERYDAY = new Map([
  ['enabled', 'layout running'],
  ['repel_k', 'spread'],
  ['spring_k', 'pull along links'],
  ['collision_k', 'node spacing'],
  ['gravity', 'keep parts together'],
  ['rest_length', 'scale'],
]);
/**
 * Settings this client has no use for, left out of its panel (they stay settings, for other
 * clients): browsers draw WebGL lines one pixel wide whatever width is asked.
 */
const NOT_HERE = new Set(['visualisation.rendering.edges.width']);

function readFlag(key) {
  try { return globalThis.localStorage?.getItem(key) === '1'; } catch { return false; }
}

function writeFlag(key, on) {
  try { globalThis.localStorage?.setItem(key, on ? '1' : '0'); } catch { /* storage off: forget */ }
}

function format(v, type) {
  if (type === 'i64' || type === 'i32') return String(Math.round(v));
  if (typeof v !== 'number') return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) { // short enough for the box: 1e-6, 2.5e+7
    const [m, e] = v.toExponential(3).split('e');
    return `${+m}e${+e}`;
  }
  return String(+v.toPrecision(6));
}

/**
 * @param {HTMLElement} root
 * @param {object[]} schema rows `{path, type, default, min, max, help}`
 * @param {import('../net/settings_store.js').SettingsStore} store
 */
export function buildSettingsPanel(root, schema, store) {
  const controls = new Map(); // path -> {input, box, scale, type, busy, editing}
  const note = document.createElement('p');
  note.className = 'note';
  note.textContent = 'Settings are shared: a change reaches every open screen and is kept. '
    + '• marks a value changed from its default; ↺ puts it back.';
  root.replaceChildren(note);
  for (const group of GROUPS) {
    const rows = schema.filter((s) => s.path.startsWith(group.prefix) && !NOT_HERE.has(s.path));
    if (!rows.length) continue;
    const details = document.createElement('details');
    // closed at first, so a newcomer sees the graph rather than thirty sliders; a group the
    // user opened stays open on the next visit
    const remembered = `graphwire.panel.${group.prefix}`;
    details.open = readFlag(remembered);
    details.addEventListener('toggle', () => writeFlag(remembered, details.open));
    const summary = document.createElement('summary');
    summary.textContent = group.title;
    summary.dataset.prefix = group.prefix;
    summary.dataset.title = group.title;
    details.append(summary);
    // a physics group: the everyday knobs first, in EVERYDAY's order
    const byName = new Map(rows.map((s) => [s.path.slice(group.prefix.length), s]));
    const first = group.prefix.endsWith('.physics.')
      ? [...EVERYDAY].filter(([name]) => byName.has(name)) : [];
    const rest = rows.filter((s) => !first.some(([name]) => byName.get(name) === s));
    for (const [name, plain] of first) {
      details.append(row(byName.get(name), group.prefix, store, controls, plain));
    }
    if (first.length && rest.length) {
      const more = document.createElement('details');
      more.className = 'more';
      const key = `graphwire.panel.more.${group.prefix}`;
      more.open = readFlag(key);
      more.addEventListener('toggle', () => writeFlag(key, more.open));
      const title = document.createElement('summary');
      title.textContent = `more (${rest.length})`;
      more.append(title);
      for (const s of rest) more.append(row(s, group.prefix, store, controls));
      details.append(more);
    } else {
      for (const s of rest) details.append(row(s, group.prefix, store, controls));
    }
    root.append(details);
  }
  store.on('change', ({ path, value }) => {
    const c = controls.get(path);
    if (c && !c.busy) show(c, value);
  });
  return controls;
}

/**
 * A setting's name as a label: words, not a path (`nodes.knowledgeColor` → `nodes knowledge
 * color`, `repel_k` → `repel k`); the full path is in the label's tooltip.
 */
export function humanName(name) {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[._]/g, ' ').toLowerCase();
}

/** Whether a value is its default (numbers compared as numbers, colours case-blind). */
function sameValue(value, def) {
  // (to f32 precision: a value stored as f32 reads back a little off its f64 default)
  if (typeof def === 'number') return Math.abs(Number(value) - def) <= 1e-6 * Math.max(1, Math.abs(def));
  if (typeof def === 'string') return String(value).toLowerCase() === def.toLowerCase();
  return value === def;
}

function show(c, value) {
  if (value === undefined) return;
  c.row.classList.toggle('changed', !sameValue(value, c.default));
  if (c.input.type === 'checkbox') c.input.checked = Boolean(value);
  else if (c.scale) c.input.value = String(positionOf(c.scale, Number(value)));
  else c.input.value = String(value);
  if (c.box && !c.editing) c.box.value = format(value, c.type);
}

/** One setting's row; `plain`: an everyday knob's name in words (its help is shown under it). */
function row(s, prefix, store, controls, plain = undefined) {
  const div = document.createElement('div');
  div.className = 'setting';
  const label = document.createElement('label');
  const name = s.path.slice(prefix.length);
  label.textContent = plain ?? humanName(name);
  label.title = `${s.path}${s.help ? `: ${s.help}` : ''} (default ${s.default})`;
  const input = document.createElement('input');
  input.dataset.testid = `setting-${s.path}`;
  input.id = `setting-${s.path}`;
  label.htmlFor = input.id;
  let box = null;
  let scale = null;
  const numeric = s.type === 'f64' || s.type === 'f32' || s.type === 'i64' || s.type === 'i32';
  if (numeric) {
    scale = scaleFor(s);
    input.type = 'range';
    input.dataset.scale = scale.kind;
    const integer = s.type.startsWith('i');
    if (scale.kind === 'log') {
      input.min = '0';
      input.max = String(STEPS);
      input.step = '1';
    } else {
      input.min = String(scale.min);
      input.max = String(scale.max);
      input.step = integer ? '1' : 'any';
    }
    box = document.createElement('input');
    box.type = 'number';
    box.className = 'value';
    box.dataset.testid = `number-${s.path}`;
    box.setAttribute('aria-label', `${name} value`);
    box.min = String(scale.min);
    box.max = String(scale.max);
    box.step = integer ? '1' : 'any';
    box.title = `${scale.min} … ${scale.max}`;
  } else if (s.type === 'bool') {
    input.type = 'checkbox';
  } else if (typeof s.default === 'string' && /^#[0-9a-f]{6}$/i.test(s.default)) {
    input.type = 'color';
  } else {
    input.type = 'text';
  }
  const c = {
    input, box, scale, type: s.type, row: div, default: s.default,
    busy: false, editing: false, timer: null, last: 0,
  };
  controls.set(s.path, c);
  const read = () => {
    if (input.type === 'checkbox') return input.checked;
    if (scale) return valueAt(scale, Number(input.value));
    return input.value;
  };
  const write = (value) => store.set(s.path, value).catch(() => show(c, store.get(s.path)));
  const send = () => {
    c.timer = null;
    c.last = performance.now();
    write(read());
  };
  input.addEventListener('input', () => {
    if (box) box.value = format(read(), s.type);
    const wait = SEND_EVERY_MS - (performance.now() - c.last);
    if (wait <= 0) send();
    else if (c.timer === null) c.timer = setTimeout(send, wait);
  });
  input.addEventListener('change', () => {
    if (c.timer !== null) { clearTimeout(c.timer); c.timer = null; }
    send();
  });
  input.addEventListener('pointerdown', () => { c.busy = true; });
  input.addEventListener('pointerup', () => { c.busy = false; });
  if (box) {
    // while a value is being typed, Deltas do not overwrite it
    box.addEventListener('input', () => { c.editing = true; });
    box.addEventListener('change', () => {
      c.editing = false;
      const v = Number(box.value);
      // out of range or not a number: the box shows the setting again, nothing is written
      if (box.value.trim() === '' || !Number.isFinite(v) || v < scale.min || v > scale.max
          || (scale.integer && !Number.isInteger(v))) {
        box.value = format(store.get(s.path) ?? s.default, s.type);
        return;
      }
      input.value = String(positionOf(scale, v));
      write(v);
    });
    box.addEventListener('blur', () => {
      c.editing = false;
      show(c, store.get(s.path) ?? s.default);
    });
  }
  const reset = document.createElement('button');
  reset.type = 'button';
  reset.className = 'reset';
  reset.textContent = '↺';
  reset.title = `reset to ${s.default}`;
  reset.dataset.testid = `reset-${s.path}`;
  reset.addEventListener('click', () => {
    show(c, s.default);
    write(s.default);
  });
  show(c, store.get(s.path) ?? s.default);
  div.append(label, input);
  if (box) div.append(box);
  div.append(reset);
  if (plain !== undefined) {  // what it does, readable without hovering (a phone cannot)
    const help = document.createElement('small');
    help.className = 'help';
    help.textContent = `${humanName(name)}: ${s.help}`;
    div.append(help);
  }
  return div;
}
