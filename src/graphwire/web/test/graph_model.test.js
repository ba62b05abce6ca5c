// The page's graph model applies graph_changed in place, including graphwire's `updated` extension.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { GraphModel } from '../app/view/graph_model.js';

test('graph_changed: added, removed and updated (a placeholder promoted to a page)', () => {
  const m = new GraphModel();
  m.load({
    epoch: 1, topologyVersion: 0,
    nodes: [
      { id: 0, key: 'a', label: 'a', type: 'knowledge', metadata: { path: 'a.md' } },
      { id: 1, key: 'Idea', label: 'Idea', type: 'knowledge', metadata: { placeholder: true } },
    ],
    edges: [{ source: 0, target: 1, weight: 1, type: 'link' }],
  });
  m.applyChange({
    topologyVersion: 1,
    added: { nodes: [{ id: 2, key: 'b', label: 'b', type: 'knowledge', metadata: {} }],
      edges: [{ source: 1, target: 2, weight: 1, type: 'link' }] },
    removed: { nodes: [], edges: [] },
    updated: { nodes: [{ id: 1, key: 'Idea', label: 'A good idea', type: 'knowledge',
      metadata: { path: 'Idea.md' } }], edges: [{ source: 0, target: 1, weight: 2, type: 'link' }] },
  });
  const idea = m.nodes[m.slotOf.get(1)];
  assert.equal(idea.label, 'A good idea');
  assert.deepEqual(idea.metadata, { path: 'Idea.md' });
  assert.equal(m.slotOf.get(1), 1); // same slot: nothing reloaded
  assert.equal(m.edges.get('0:1').weight, 2);
  assert.equal(m.edgeCount, 2);
  assert.equal(m.topologyVersion, 1);
});

test('search: key, label and a vault page\'s aliases; prefix matches first', () => {
  const m = new GraphModel();
  m.load({
    epoch: 1, topologyVersion: 0,
    nodes: [
      { id: 0, key: 'Machine Learning', label: 'Machine Learning', type: 'knowledge',
        metadata: { alias: ['ML', 'Statistical Learning'] } },
      { id: 1, key: '2024_01_31', label: 'Jan 31st, 2024', type: 'knowledge', metadata: {} },
      { id: 2, key: 'html', label: 'html', type: 'knowledge', metadata: { Aliases: 'markup' } },
      { id: 3, key: 'deep', label: 'Deep Learning', type: 'knowledge', metadata: null },
    ],
    edges: [],
  });
  const keys = (text) => m.search(text).map((s) => m.nodes[s].key);
  assert.deepEqual(keys('ml'), ['Machine Learning', 'html']); // the alias ML is a prefix match
  assert.deepEqual(keys('statistical'), ['Machine Learning']);
  assert.deepEqual(keys('jan 31'), ['2024_01_31']);
  assert.deepEqual(keys('mark'), ['html']);
  assert.deepEqual(keys('learning'), ['deep', 'Machine Learning']);
  assert.deepEqual(keys('nothing'), []);
  m.updateNode({ id: 3, key: 'deep', label: 'Deep Learning', type: 'knowledge',
    metadata: { alias: ['DL'] } });
  assert.deepEqual(keys('dl'), ['deep']); // an alias added in place is found at once
});
