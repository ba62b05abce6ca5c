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
  // a result found through an alias says which (its key and label say nothing of it)
  const slot = (key) => m.slotOfKey.get(key);
  assert.equal(m.aliasMatched(slot('Machine Learning'), 'statis'), 'Statistical Learning');  // as written
  assert.equal(m.aliasMatched(slot('Machine Learning'), 'machine'), null);
  assert.equal(m.aliasMatched(slot('html'), 'mark'), 'markup');
});

test('search ranks a name before an alias, and a start or word before the inside of a word', () => {
  // Obsidian's help vault: "link" typed, its page "Tabs" (alias "linked pane") came first
  const m = new GraphModel();
  const names = [['Tabs', ['linked pane']], ['Internal links', []], ['Link notes', []],
    ['Backlinks', []], ['Embed files', ['linking notes and files']], ['Link', []],
    ['Graph', ['link']]];
  m.load({
    epoch: 1, topologyVersion: 0,
    nodes: names.map(([key, alias], id) => ({ id, key, label: key, type: 'knowledge', metadata: { alias } })),
    edges: [],
  });
  const keys = (text, limit) => m.search(text, limit).map((s) => m.nodes[s].key);
  assert.deepEqual(keys('link'), ['Link', 'Graph', 'Link notes', 'Internal links', 'Tabs',
    'Embed files', 'Backlinks']);
  assert.deepEqual(keys('LINK', 2), ['Link', 'Graph']);
  assert.deepEqual(keys('notes'), ['Link notes', 'Embed files']);
  const slot = (key) => m.slotOfKey.get(key);
  assert.equal(m.aliasMatched(slot('Graph'), 'link'), 'link');
  assert.equal(m.aliasMatched(slot('Tabs'), 'link'), 'linked pane');
  assert.equal(m.aliasMatched(slot('Link notes'), 'link'), null);
});

function graphOf(n, pairs) {
  const m = new GraphModel();
  m.load({
    epoch: 1, topologyVersion: 0,
    nodes: Array.from({ length: n }, (_, i) => ({ id: i, key: `n${i}`, label: `n${i}`, type: 'knowledge', metadata: {} })),
    edges: pairs.map(([a, b]) => ({ source: a, target: b, weight: 1, type: 'link' })),
  });
  return m;
}

test('communities: two cliques joined by one edge are two communities, split where the bridge is', () => {
  const pairs = [];
  for (const base of [0, 5]) for (let i = 0; i < 5; i++) for (let j = i + 1; j < 5; j++) pairs.push([base + i, base + j]);
  pairs.push([4, 5]);
  const c = graphOf(10, pairs).communities();
  assert.equal(new Set(c).size, 2);
  for (let i = 1; i < 5; i++) { assert.equal(c[i], c[0]); assert.equal(c[5 + i], c[5]); }
  assert.notEqual(c[0], c[5]);
});

test('communities: the karate club is not one colour (label propagation flooded it)', () => {
  const karate = [[0,1],[0,2],[0,3],[0,4],[0,5],[0,6],[0,7],[0,8],[0,10],[0,11],[0,12],[0,13],[0,17],[0,19],[0,21],[0,31],
    [1,2],[1,3],[1,7],[1,13],[1,17],[1,19],[1,21],[1,30],[2,3],[2,7],[2,8],[2,9],[2,13],[2,27],[2,28],[2,32],[3,7],[3,12],
    [3,13],[4,6],[4,10],[5,6],[5,10],[5,16],[6,16],[8,30],[8,32],[8,33],[9,33],[13,33],[14,32],[14,33],[15,32],[15,33],
    [18,32],[18,33],[19,33],[20,32],[20,33],[22,32],[22,33],[23,25],[23,27],[23,29],[23,32],[23,33],[24,25],[24,27],
    [24,31],[25,31],[26,29],[26,33],[27,33],[28,31],[28,33],[29,32],[29,33],[30,32],[30,33],[31,32],[31,33],[32,33]];
  const c = graphOf(34, karate).communities();
  const count = new Set(c).size;
  assert.ok(count >= 3 && count <= 6, `communities: ${count}`);
  assert.notEqual(c[0], c[33]); // the two leaders end in different communities
  assert.equal(c[0], c[1]);
  assert.equal(c[32], c[33]);
});

test('communities: an empty slot is -1, a lone node its own community', () => {
  const m = graphOf(4, [[0, 1], [1, 2]]);
  m.applyChange({ topologyVersion: 1, added: { nodes: [], edges: [] },
    removed: { nodes: [2], edges: [[1, 2]] } });
  const c = m.communities();
  assert.equal(c[2], -1);
  assert.equal(c[0], c[1]);
  assert.notEqual(c[3], c[0]);
  assert.ok(c[3] >= 0);
});

test('role: a page, a placeholder only tags name (a tag), one a link names (not written yet)', () => {
  const m = new GraphModel();
  const ph = { placeholder: true };
  m.load({
    epoch: 1, topologyVersion: 0,
    nodes: [
      { id: 0, key: 'note', type: 'knowledge', metadata: { path: 'note.md' } },
      { id: 1, key: 'cooking', type: 'knowledge', metadata: ph },
      { id: 2, key: 'Andromeda', type: 'knowledge', metadata: ph },
      { id: 3, key: 'both', type: 'knowledge', metadata: ph },
      { id: 4, key: 'alone', type: 'knowledge', metadata: ph },
    ],
    edges: [
      { source: 0, target: 1, type: 'tag' },
      { source: 0, target: 2, type: 'link' },
      { source: 0, target: 3, type: 'tag' },
      { source: 2, target: 3, type: 'link' },
    ],
  });
  const role = (key) => m.role(m.slotOfKey.get(key));
  assert.equal(role('note'), 'page');
  assert.equal(role('cooking'), 'tag');
  assert.equal(role('Andromeda'), 'unwritten');
  assert.equal(role('both'), 'unwritten');
  assert.equal(role('alone'), 'unwritten');
});

test('named: the node a [[link]] in a page stands for, its own links first', () => {
  const m = new GraphModel();
  m.load({
    epoch: 1, topologyVersion: 0,
    nodes: [
      { id: 0, key: 'advanced queries', label: 'Advanced Queries', type: 'knowledge', metadata: { type: '[[Feature]]' } },
      { id: 1, key: 'feature', label: 'Feature', type: 'knowledge', metadata: {} },
      { id: 2, key: 'features', label: 'Features', type: 'knowledge', metadata: { alias: ['Feature list'] } },
      { id: 3, key: 'other/feature', label: 'feature', type: 'knowledge', metadata: {} },
    ],
    edges: [{ source: 0, target: 3, weight: 1, type: 'link' }],
  });
  const slot = (key) => m.slotOfKey.get(key);
  const near = m.adjacency[slot('advanced queries')];
  assert.equal(m.named('Feature', near), slot('other/feature'));  // the one the page links to
  assert.equal(m.named('FEATURE'), slot('feature'));  // anywhere: the whole name, any case
  assert.equal(m.named('feature list'), slot('features'));  // a whole alias
  assert.equal(m.named('Featur'), -1);  // a start is not a name
  assert.equal(m.named('Features', near, false), -1);  // not among its links
  assert.equal(m.named(' '), -1);
});
