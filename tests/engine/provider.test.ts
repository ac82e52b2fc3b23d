import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Engine, availableProviders } from '../../src/engine/index.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { tempDir } from '../helpers/adapters.js';

describe('execution provider selection', () => {
  it('cpu is always available and is the default', async () => {
    assert.ok(availableProviders().includes('cpu'));
    const dir = join(tempDir(), 'm');
    writeRandomModel(dir, { family: 'gpt2', seed: 2 });
    const engine = await Engine.create({ modelDir: dir, slots: 0 });
    assert.equal(engine.options.provider, 'cpu');
    await engine.close();
  });

  it('a provider whose binaries are not installed fails with provider_unavailable and a hint', {
    skip: process.env.LORASERVE_TEST_CUDA === '1',
  }, async () => {
    const dir = join(tempDir(), 'm');
    writeRandomModel(dir, { family: 'gpt2', seed: 2 });
    await assert.rejects(Engine.create({ modelDir: dir, provider: 'cuda', slots: 0 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'provider_unavailable');
      assert.match(err.message, /cuda/);
      return true;
    });
  });

  it('a GPU provider refuses the host KV cache (it keeps the cache on the device)', async () => {
    const dir = join(tempDir(), 'm');
    writeRandomModel(dir, { family: 'gpt2', seed: 2 });
    await assert.rejects(
      Engine.create({ modelDir: dir, provider: 'webgpu', kvCache: 'host', slots: 0 }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'invalid_config');
        assert.match(err.message, /host KV cache runs on the cpu provider only/);
        return true;
      },
    );
  });

  it('the cpu provider keeps the cache on the host unless told otherwise', async () => {
    const dir = join(tempDir(), 'm');
    writeRandomModel(dir, { family: 'gpt2', seed: 2 });
    const host = await Engine.create({ modelDir: dir, slots: 0 });
    const device = await Engine.create({ modelDir: dir, slots: 0, kvCache: 'device' });
    assert.deepEqual([host.kvResidency, device.kvResidency], ['host', 'device']);
    await host.close();
    await device.close();
  });
});
