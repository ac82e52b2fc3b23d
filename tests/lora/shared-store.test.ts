/**
 * Two AdapterStore instances on one folder behave as two replicas sharing a volume: what one
 * writes, replaces or deletes the other sees on its next `refresh`, and concurrent writes of one
 * name leave one whole version.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdapterStore, VERSION_FILE } from '../../src/lora/adapter-store.js';
import { tempDir } from '../helpers/adapters.js';

const files = (tag: string, bytes = 64) => ({ config: JSON.stringify({ tag }), weights: new Uint8Array(bytes).fill(tag.charCodeAt(0)) });

describe('shared adapter store', () => {
  it('reads through unknown names and notices replace and delete by another replica', async () => {
    const root = tempDir();
    const a = await AdapterStore.open(root);
    const b = await AdapterStore.open(root);
    await a.put('x', files('one'));
    assert.equal(b.get('x'), undefined);
    const seen = await b.refresh('x');
    assert.ok(seen);
    assert.equal((await b.read(seen)).config, JSON.stringify({ tag: 'one' }));
    assert.equal(await b.refresh('x'), seen, 'an unchanged adapter keeps its entry (and its cached version)');

    await a.put('x', files('two'));
    const replaced = await b.refresh('x');
    assert.notEqual(replaced!.version, seen.version);
    assert.equal((await b.read(replaced!)).config, JSON.stringify({ tag: 'two' }));
    await assert.rejects(b.read(seen), { code: 'adapter_load_failed' }, 'reading a superseded version fails instead of mixing files');

    await a.delete('x');
    assert.equal(await b.refresh('x'), undefined);
    assert.equal(b.get('x'), undefined);
    assert.deepEqual(
      (await b.rescan()).map((e) => e.name),
      [],
    );
  });

  it('lists adapters another replica wrote and drops the ones it deleted', async () => {
    const root = tempDir();
    const a = await AdapterStore.open(root);
    const b = await AdapterStore.open(root);
    await a.put('p', files('p'));
    await a.put('q', files('q'));
    assert.deepEqual(
      (await b.rescan()).map((e) => e.name),
      ['p', 'q'],
    );
    await a.delete('p');
    assert.deepEqual(
      (await b.rescan()).map((e) => e.name),
      ['q'],
    );
  });

  it('gives hand-placed folders (no stamp file) a stamp from their weights file', async () => {
    const root = tempDir();
    const b = await AdapterStore.open(root);
    mkdirSync(join(root, 'manual'));
    writeFileSync(join(root, 'manual', 'adapter_config.json'), '{}');
    writeFileSync(join(root, 'manual', 'adapter_model.safetensors'), 'aaaa');
    const first = await b.refresh('manual');
    assert.match(first!.stamp, /^stat:/);
    writeFileSync(join(root, 'manual', 'adapter_model.safetensors'), 'bbbbbbbb');
    assert.notEqual((await b.refresh('manual'))!.version, first!.version);
  });

  it('two replicas writing one name at once leave one whole version, never a mix', async () => {
    const root = tempDir();
    const a = await AdapterStore.open(root);
    const b = await AdapterStore.open(root);
    for (let round = 0; round < 20; round++) {
      const results = await Promise.allSettled([a.put('race', files(`a${round}`, 4096)), b.put('race', files(`b${round}`, 4096))]);
      assert.ok(
        results.every((r) => r.status === 'fulfilled'),
        JSON.stringify(results.filter((r) => r.status === 'rejected')),
      );
      const c = await AdapterStore.open(root);
      const entry = c.get('race')!;
      const got = await c.read(entry);
      const tag = (JSON.parse(got.config) as { tag: string }).tag;
      assert.ok([`a${round}`, `b${round}`].includes(tag));
      assert.ok(
        got.weights.every((v) => v === tag.charCodeAt(0)),
        'weights come from the same upload as the config',
      );
      assert.equal(readFileSync(join(root, 'race', VERSION_FILE), 'utf8'), entry.stamp);
    }
    assert.deepEqual(
      readdirSync(root).filter((f) => f.startsWith('.')),
      [],
      'no temp folders left behind',
    );
  });

  it("a replica starting up leaves a live writer's temp folders alone and removes a dead one's", async () => {
    const root = tempDir();
    const host = (await import('node:os')).hostname().replace(/[^A-Za-z0-9.-]/g, '_');
    const live = `.upload-y-0123456789ab.${process.ppid}@${host}`;
    const dead = `.upload-z-0123456789ab.${2 ** 22 + 12345}@${host}`;
    const foreign = `.upload-w-0123456789ab.1@some-other-replica`;
    for (const d of [live, dead, foreign]) mkdirSync(join(root, d));
    const opened = await AdapterStore.open(root);
    assert.deepEqual(opened.startup.removed, [dead]);
    assert.deepEqual(readdirSync(root).sort(), [foreign, live].sort());
  });
});
