/**
 * Creates WebGPU sessions over the graphs the engine runs on a device cache, with ORT's verbose log
 * (which names the provider of every node), one after another behind a `PLACEMENT <case>` marker
 * on stderr. tests/engine/webgpu-placement.test.ts reads the log.
 */
import { join } from 'node:path';
import { OnnxSession } from '../../src/engine/onnx-backend.js';
import {
  buildGraph,
  kvCopyRowGraph,
  kvResizeGraph,
  kvSliceGraph,
  kvWriteGraph,
  loadHfModel,
  loraTablesWriteGraph,
  quantizeBase,
  type QuantizeMode,
} from '../../src/model/index.js';
import { writeRandomModel, type RandomModelOptions } from '../../src/testing/index.js';
import { tempDir } from './adapters.js';

const cases: Array<[string, RandomModelOptions, QuantizeMode | null]> = [
  ['gpt2', { family: 'gpt2', seed: 1 }, null],
  ['llama-gqa-window', { family: 'llama', seed: 2, heads: 4, kvHeads: 2, config: { model_type: 'mistral', sliding_window: 4 } }, null],
  ['qwen2-int8', { family: 'qwen2', seed: 3 }, 'int8'],
  ['llama-int4', { family: 'llama', seed: 4 }, 'int4'],
];

const mark = (name: string) => process.stderr.write(`PLACEMENT ${name}\n`);
for (const [name, options, quantize] of cases) {
  const model = loadHfModel(writeRandomModel(join(tempDir(), name), options).dir);
  const quant = quantize ? await quantizeBase(model, quantize) : null;
  mark(`step:${name}`);
  const session = await OnnxSession.create(buildGraph(model, { slots: 3, maxRank: 8 }, undefined, quant, 'device'), {
    provider: 'webgpu',
    verboseLog: true,
  });
  await session.release();
}
for (const [name, bytes] of [
  ['kv-resize', kvResizeGraph(4)],
  ['kv-copy-row', kvCopyRowGraph(4)],
  ['kv-slice', kvSliceGraph(4)],
  ['kv-write', kvWriteGraph(4)],
  ['lora-write', loraTablesWriteGraph([true, true, false, false])],
] as const) {
  mark(name);
  await (await OnnxSession.create({ bytes }, { provider: 'webgpu', verboseLog: true })).release();
}
mark('end');
