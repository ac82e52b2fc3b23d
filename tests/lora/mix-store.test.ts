import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AdapterStore, MixStore } from '../../src/lora/index.js';
import { tempDir } from '../helpers/adapters.js';

describe('saved adapter mixes on disk', () => {
  it('survive a restart, replace and delete, and are never taken for adapter folders', async () => {
    const root = tempDir();
    const store = await MixStore.open(root);
    await store.put('blend', [
      { name: 'medical', weight: 0.7 },
      { name: 'legal', weight: 0.3 },
    ]);
    await store.put('other', [{ name: 'legal', weight: 1 }]);
    await store.put('blend', [
      { name: 'medical', weight: 0.5 },
      { name: 'legal', weight: 0.5 },
    ]);
    await store.delete('other');
    const reopened = await MixStore.open(root);
    assert.deepEqual(
      reopened.list().map((m) => [m.name, m.members]),
      [
        [
          'blend',
          [
            { name: 'medical', weight: 0.5 },
            { name: 'legal', weight: 0.5 },
          ],
        ],
      ],
    );
    assert.deepEqual((await AdapterStore.open(root)).list(), []);
  });
});
