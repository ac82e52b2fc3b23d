import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { skipWithoutWebgpu } from '../helpers/webgpu.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** Case → the nodes ORT placed on the CPU provider, read from its verbose session log. */
function cpuPlacedNodes(log: string): Map<string, string[]> {
  const cases = new Map<string, string[]>();
  let current: string[] | null = null;
  let listing = 0;
  for (const line of log.split('\n')) {
    const marker = /^PLACEMENT (\S+)/.exec(line);
    if (marker) {
      current = [];
      cases.set(marker[1]!, current);
      listing = 0;
      continue;
    }
    const header = /Node\(s\) placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(line);
    if (header) {
      listing = header[1] === 'CPUExecutionProvider' ? Number(header[2]) : 0;
      continue;
    }
    const node = /VerifyEachNodeIsAssignedToAnEp\]\s+(\w+) \((.+)\)$/.exec(line);
    if (node && listing > 0 && current) {
      current.push(`${node[1]} (${node[2]})`);
      listing--;
    }
  }
  return cases;
}

describe('every node of the device-cache graphs runs on the WebGPU provider', () => {
  it(
    'step graphs (GPT-2, Llama GQA with a sliding window, Qwen2 int8, Llama int4, with LoRA) and the cache (prefix pieces included) and slot graphs place no node on the CPU',
    skipWithoutWebgpu(),
    () => {
      const child = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'tests/helpers/placement-child.ts')], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 300_000,
        maxBuffer: 256 * 1024 * 1024,
      });
      assert.equal(child.status, 0, child.stderr.slice(-2000));
      const placed = cpuPlacedNodes(child.stderr);
      assert.deepEqual(
        [...placed.keys()],
        [
          'step:gpt2',
          'step:llama-gqa-window',
          'step:qwen2-int8',
          'step:llama-int4',
          'kv-resize',
          'kv-copy-row',
          'kv-slice',
          'kv-write',
          'lora-write',
          'end',
        ],
      );
      for (const [name, nodes] of placed) assert.deepEqual(nodes, [], `${name}: nodes placed on the CPU`);
      assert.equal(child.stderr.match(/All nodes placed on \[WebGpuExecutionProvider\]/g)?.length, 9, 'nine graphs, each wholly on WebGPU');
    },
  );
});
