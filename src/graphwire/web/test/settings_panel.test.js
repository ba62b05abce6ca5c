// Labels of the settings panel: words a person reads, not dotted paths broken mid-word.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { humanName } from '../app/ui/settings_panel.js';

test('a setting name becomes words', () => {
  assert.equal(humanName('nodes.knowledgeColor'), 'nodes knowledge color');
  assert.equal(humanName('repel_k'), 'repel k');
  assert.equal(humanName('sssp.pathColor'), 'sssp path color');
  assert.equal(humanName('nodes.labelDistance'), 'nodes label distance');
  assert.equal(humanName('interpolate'), 'interpolate');
});
