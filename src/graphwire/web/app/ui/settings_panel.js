/**
 * The settings panel, generated from the schema the server serves (`GET /api/settings?schema=1`):
 * every physics parameter of both graphs and the rendering settings, grouped, each a slider
 * (`<input type=range data-testid="setting-<path>">`) with its range and a reset to default,
 * bound to the settings store: moving a slider writes the setting (throttled), and a change made
 * anywhere moves the slider as soon as its Delta arrives.
 * @module ui/settings_panel
 */

const GROUPS = [
  { prefix: 'visualisation.graphs.logseq.physics.', title: 'Knowledge graph physics' },
  { prefix: 'visualisation.graphs.visionflow.physics.', title: 'Agent graph physics' },
  { prefix: 'visualisation.rendering.', title: 'Rendering' },
];
const SEND_EVERY_MS = 80;

function format(v, type) {
  if (type === 'i64' || type === 'i32') return String(Math.round(v));
  if (typeof v !== 'number') return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 0.001 || a >= 1e5) ? v.toExponential(2) : String(+v.toPrecision(4));
}

/**
 * @param {HTMLElement} root
 * @param {object[]} schema rows `{path, type, default, min, max, help}`
 * @param {import('../net/settings_store.js').SettingsStore} store
 */
export function buildSettingsPanel(root, schema, store) {
  const controls = new Map(); // path -> {input, output, type, busy}
  root.replaceChildren();
  for (const group of GROUPS) {
    const rows = schema.filter((s) => s.path.startsWith(group.prefix));
    if (!rows.length) continue;
    const details = document.createElement('details');
    details.open = group === GROUPS[0];
    const summary = document.createElement('summary');
    summary.textContent = group.title;
    details.append(summary);
    for (const s of rows) details.append(row(s, group.prefix, store, controls));
    root.append(details);
  }
  store.on('change', ({ path, value }) => {
    const c = controls.get(path);
    if (c && !c.busy) show(c, value);
  });
  return controls;
}

function show(c, value) {
  if (value === undefined) return;
  if (c.input.type === 'checkbox') c.input.checked = Boolean(value);
  else c.input.value = String(value);
  if (c.output) c.output.textContent = format(value, c.type);
}

function row(s, prefix, store, controls) {
  const div = document.createElement('div');
  div.className = 'setting';
  const label = document.createElement('label');
  const name = s.path.slice(prefix.length);
  label.textContent = name.replace(/_/g, ' ');
  label.title = `${s.path}${s.help ? `: ${s.help}` : ''} (default ${s.default})`;
  const input = document.createElement('input');
  input.dataset.testid = `setting-${s.path}`;
  input.id = `setting-${s.path}`;
  label.htmlFor = input.id;
  let output = null;
  const numeric = s.type === 'f64' || s.type === 'f32' || s.type === 'i64' || s.type === 'i32';
  if (numeric) {
    input.type = 'range';
    input.min = String(s.min ?? 0);
    input.max = String(s.max ?? Math.max(1, 10 * Math.abs(s.default)));
    input.step = s.type.startsWith('i') ? '1' : 'any';
    output = document.createElement('output');
  } else if (s.type === 'bool') {
    input.type = 'checkbox';
  } else if (typeof s.default === 'string' && /^#[0-9a-f]{6}$/i.test(s.default)) {
    input.type = 'color';
  } else {
    input.type = 'text';
  }
  const c = { input, output, type: s.type, busy: false, timer: null, last: 0 };
  controls.set(s.path, c);
  const read = () => (input.type === 'checkbox' ? input.checked : numeric ? Number(input.value) : input.value);
  const send = () => {
    c.timer = null;
    c.last = performance.now();
    store.set(s.path, read()).catch(() => show(c, store.get(s.path)));
  };
  input.addEventListener('input', () => {
    if (output) output.textContent = format(read(), s.type);
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
  const reset = document.createElement('button');
  reset.type = 'button';
  reset.className = 'reset';
  reset.textContent = '↺';
  reset.title = `reset to ${s.default}`;
  reset.dataset.testid = `reset-${s.path}`;
  reset.addEventListener('click', () => {
    show(c, s.default);
    store.set(s.path, s.default).catch(() => show(c, store.get(s.path)));
  });
  show(c, store.get(s.path) ?? s.default);
  div.append(label, input);
  if (output) div.append(output);
  div.append(reset);
  return div;
}
