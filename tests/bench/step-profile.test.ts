import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { profileDecodeSteps } from '../../src/bench/step-profile.js';
import { loadHfModel } from '../../src/model/index.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { readAdapter, tempDir, writeRandomAdapter } from '../helpers/adapters.js';

describe("a decode step's ORT profile", () => {
  it('accounts for a step by operator type, the same graph at either cache length', async () => {
    const dir = tempDir();
    const { dir: modelDir } = writeRandomModel(join(dir, 'model'), {
      family: 'llama',
      hidden: 32,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      intermediate: 64,
    });
    const model = loadHfModel(modelDir);
    const adapterDir = join(dir, 'adapter');
    await writeRandomAdapter(adapterDir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] }, 5);
    const adapter = readAdapter(adapterDir, model);
    model.weights.close();
    const [short, long] = await profileDecodeSteps(
      { modelDir, slots: 2, maxRank: 4, loraModules: ['q_proj', 'v_proj'], maxBatch: 4, threads: 1 },
      [adapter],
      [
        { slots: [1, 0, 1], cached: 8 },
        { slots: [1, 0, 1], cached: 200 },
      ],
      dir,
    );
    for (const p of [short!, long!]) {
      assert.equal(p.rows, 3);
      assert.ok(p.nodes > 20, `${p.nodes} nodes`);
      assert.ok(p.between_kernels_ms >= 0, "only the timed steps' kernels are counted, so they fit inside the steps");
      assert.equal(
        p.ops.reduce((sum, o) => sum + o.nodes, 0),
        p.nodes,
      );
      assert.deepEqual(
        p.ops.map((o) => o.ms),
        p.ops.map((o) => o.ms).sort((a, b) => b - a),
        'largest first',
      );
      assert.ok(['SimplifiedLayerNormalization', 'RotaryEmbedding', 'MatMul'].every((op) => p.ops.some((o) => o.op === op)));
    }
    assert.equal(short!.nodes, long!.nodes, 'the same graph at either length');
    assert.deepEqual([short!.cached, long!.cached], [8, 200]);
  });
});
