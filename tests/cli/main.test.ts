import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeRandomModel } from '../../src/testing/index.js';
import { tempDir } from '../helpers/adapters.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/** Runs the CLI in a child process and returns its exit status and stderr. */
function cli(args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', MAIN, ...args],
      { env: { ...process.env, LORASERVE_LOG_LEVEL: 'silent', ...env } },
      (err, _stdout, stderr) => {
        resolve({ status: err ? (err.code as number) : 0, stderr });
      },
    );
  });
}

describe('loraserve CLI errors: one line on stderr, exit status 2', () => {
  const oneLine = (stderr: string, message: RegExp) => {
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0]!, message);
  };

  it('a flag that is not a number, an unknown flag, an unknown provider', async () => {
    for (const [args, message] of [
      [['serve', '--port', 'eighty'], /^loraserve: --port must be a number, got "eighty"$/],
      [['serve', '--colour', 'red'], /^loraserve: .*--colour/],
      [['serve', '--provider', 'tpu'], /^loraserve: --provider must be cpu, cuda or webgpu, not "tpu"$/],
      [['train', '--model', 'm', '--data', 'd', '--out', 'o', '--r', 'x'], /^loraserve: --r must be a number, got "x"$/],
    ] as const) {
      const r = await cli([...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      oneLine(r.stderr, message);
    }
  });

  it('a bad count, a folder that is not a model, a port already taken', async () => {
    const root = tempDir();
    writeRandomModel(join(root, 'm'), { family: 'llama', seed: 5 });
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const cases = [
        [['serve', '--slots', '1.5'], /^loraserve: --slots must be a whole number of at least 0, got "1.5"$/],
        [['serve', '--model', root], /^loraserve: .* has no config\.json: not a Hugging Face model folder$/],
        [
          ['serve', '--model', join(root, 'm'), '--adapters', join(root, 'a'), '--port', String(port)],
          /^loraserve: cannot listen on 127\.0\.0\.1:\d+: the port is already in use$/,
        ],
      ] as const;
      const results = await Promise.all(cases.map(([args]) => cli([...args])));
      for (const [i, [args, message]] of cases.entries()) {
        assert.equal(results[i]!.status, 2, `${args.join(' ')}: ${results[i]!.stderr}`);
        oneLine(results[i]!.stderr, message);
      }
    } finally {
      taken.close();
    }
  });

  it('a keys file that is not JSON is a configuration error, named as one', async () => {
    const keys = join(tempDir(), 'keys.json');
    writeFileSync(keys, '{nope');
    const r = await cli(['serve', '--keys', keys]);
    assert.equal(r.status, 2);
    oneLine(r.stderr, /^loraserve: keys file .* is not readable JSON$/);
  });

  it('--preload with --slots 0 fails at once instead of waiting for a slot forever', async () => {
    const dir = join(tempDir(), 'm');
    writeRandomModel(dir, { family: 'llama', seed: 5 });
    const r = await cli([
      'serve',
      '--model',
      dir,
      '--adapters',
      join(tempDir(), 'adapters'),
      '--slots',
      '0',
      '--preload',
      'support',
      '--port',
      '0',
    ]);
    assert.equal(r.status, 2);
    oneLine(r.stderr, /^loraserve: this server runs without adapter slots \(--slots 0\)/);
  });

  it('--provider webgpu without a Vulkan adapter: exit 2, its last line says why (Dawn prints its own diagnostics first)', async () => {
    const dir = join(tempDir(), 'm');
    writeRandomModel(dir, { family: 'gpt2', seed: 5 });
    // No driver manifest: the Vulkan loader finds no adapter, as on a machine without a GPU or Mesa.
    const r = await cli(['serve', '--model', dir, '--adapters', join(tempDir(), 'adapters'), '--provider', 'webgpu', '--port', '0'], {
      VK_ICD_FILENAMES: '/nonexistent/icd.json',
      VK_DRIVER_FILES: '/nonexistent/icd.json',
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr.trim().split('\n').at(-1)!, /^loraserve: execution provider "webgpu" could not start: .*adapter/i);
  });
});
