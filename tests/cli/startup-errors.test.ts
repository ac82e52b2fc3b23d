import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { runCli, writeTinyModel } from '../helpers/child-server.js';
import { tempDir } from '../helpers/adapters.js';

// Startup errors print one clear line and exit non-zero, with no stack trace (real processes).
describe('startup errors', { concurrency: true }, () => {
  let root: string;
  let model: string;
  let taken: Server;
  let port: number;
  before(async () => {
    root = tempDir();
    model = writeTinyModel(join(root, 'tiny-llama'));
    mkdirSync(join(root, 'empty'));
    writeFileSync(join(root, 'keys.json'), '{"keys": [{"key": "short"}]}');
    taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    port = (taken.address() as { port: number }).port;
  });
  after(() => new Promise((resolve) => taken.close(resolve)));

  const cases: Array<[string, () => string[], number, RegExp]> = [
    ['an unknown flag', () => ['serve', '--modle', model], 2, /^loraserve: unknown option --modle: see --help for the options$/],
    ['a bad number', () => ['serve', '--slots', 'many'], 2, /^loraserve: --slots must be a whole number from 0 up, got "many"$/],
    ['a folder that is not a model', () => ['serve', '--model', join(root, 'empty')], 1, /^loraserve: .*empty has no config\.json: not a Hugging Face model folder$/],
    ['a bad keys file', () => ['serve', '--model', model, '--keys', join(root, 'keys.json')], 1, /^loraserve: keys file: entry 0 needs a "key" of at least 8 characters$/],
    ['a port in use', () => ['serve', '--model', model, '--adapters', join(root, 'adapters'), '--port', String(port)], 1, /^loraserve: cannot listen on 127\.0\.0\.1:\d+: the port is already in use$/],
  ];
  for (const [what, args, code, line] of cases) {
    it(`${what}: one line, exit ${code}`, async () => {
      const r = await runCli(args());
      assert.equal(r.code, code, r.stderr);
      assert.match(r.stderr.trimEnd(), line);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    });
  }
});
