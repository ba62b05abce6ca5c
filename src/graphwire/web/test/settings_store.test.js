// The settings store (docs/protocol.md §5): path table, snapshot with digest check, deltas in
// revision order, writes with the declared tag, sync after the revision named at connect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SettingsStore } from '../app/net/settings_store.js';
import { Tag, decodeSettings, settingsDigest } from '../app/protocol/settings_codec.js';
import { toHex } from '../app/protocol/blake3.js';
import { FakeTimers } from './fake_timers.js';

const DAMPING = 'visualisation.graphs.logseq.physics.damping';
const ITER = 'visualisation.graphs.logseq.physics.iterations';

function setup() {
  const sent = [];
  const store = new SettingsStore({ send: (b) => sent.push(b), timers: new FakeTimers() });
  store.handle({ type: 'PathTable', paths: [{ pathId: 1, tag: Tag.F64, path: DAMPING }, { pathId: 8, tag: Tag.I64, path: ITER }] });
  return { store, sent };
}
const entries = [[1, { tag: Tag.F64, value: 0.92 }], [8, { tag: Tag.I64, value: 100 }]];
const tick = () => new Promise((r) => setTimeout(r, 0));

test('a snapshot fills the store and its digest is checked', () => {
  const { store } = setup();
  const changes = [];
  store.on('change', (c) => changes.push(c.path));
  store.handle({ type: 'Snapshot', req: 0, revision: 5, digest: settingsDigest(entries), entries });
  assert.equal(store.get(DAMPING), 0.92);
  assert.equal(store.get(ITER), 100);
  assert.equal(store.revision, 5);
  assert.deepEqual(changes, [DAMPING, ITER]);
  assert.equal(store.digestMismatches, 0);
  const errors = [];
  store.on('error', (e) => errors.push(e.code));
  store.handle({ type: 'Snapshot', req: 0, revision: 6, digest: new Uint8Array(32), entries });
  assert.deepEqual(errors, ['digest_mismatch']);
});

test('deltas apply in revision order; old ones are ignored', () => {
  const { store } = setup();
  store.handle({ type: 'Snapshot', req: 0, revision: 5, digest: settingsDigest(entries), entries });
  store.handle({ type: 'Delta', revision: 6, entries: [[1, { tag: Tag.F64, value: 0.5 }]] });
  store.handle({ type: 'Delta', revision: 4, entries: [[1, { tag: Tag.F64, value: 0.1 }]] });
  assert.equal(store.get(DAMPING), 0.5);
  assert.equal(store.revision, 6);
});

test('a write goes out as Set with the declared tag and resolves with its Response', async () => {
  const { store, sent } = setup();
  const done = store.set(ITER, 250.4);
  await tick();
  const msg = await decodeSettings(sent[0]);
  assert.deepEqual(msg, { type: 'Set', req: msg.req, pathId: 8, value: { tag: Tag.I64, value: 250 } });
  store.handle({ type: 'Response', req: msg.req, revision: 7, entries: [[8, { tag: Tag.I64, value: 250 }]] });
  assert.equal((await done).revision, 7);
  assert.equal(store.get(ITER), 250);
  await assert.rejects(store.set('no.such.path', 1));
});

test('after a sync at the announced revision, a digest that differs asks for a full sync', async () => {
  const { store, sent } = setup();
  store.expect({ revision: 5, digest: toHex(settingsDigest([[1, { tag: Tag.F64, value: 0.3 }], entries[1]])) });
  store.handle({ type: 'Response', req: 0, revision: 5, entries });
  await tick();
  assert.equal(store.digestMismatches, 1);
  const sync = await decodeSettings(sent.at(-1));
  assert.equal(sync.type, 'Sync');
  assert.equal(sync.sinceRevision, 0);
});
