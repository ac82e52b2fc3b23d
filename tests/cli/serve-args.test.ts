import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseServeArgs, serveUsage } from '../../src/cli/serve.js';

describe('serve: --quantize and LORASERVE_QUANTIZE', () => {
  it('float32 unless asked; the flag wins over the environment; none turns it off', () => {
    assert.equal(parseServeArgs([], {}).quantize, null);
    assert.equal(parseServeArgs(['--quantize', 'int4'], {}).quantize, 'int4');
    assert.equal(parseServeArgs([], { LORASERVE_QUANTIZE: 'int8' }).quantize, 'int8');
    assert.equal(parseServeArgs(['--quantize', 'int4'], { LORASERVE_QUANTIZE: 'int8' }).quantize, 'int4');
    assert.equal(parseServeArgs(['--quantize', 'none'], { LORASERVE_QUANTIZE: 'int8' }).quantize, null);
  });

  it('refuses a mode it cannot serve, naming the choices', () => {
    assert.throws(() => parseServeArgs(['--quantize', 'int3'], {}), /--quantize must be int8, int4 or none, not "int3"/);
    assert.throws(() => parseServeArgs([], { LORASERVE_QUANTIZE: 'fp16' }), /--quantize must be/);
  });

  it('takes a cache folder for the quantized weights', () => {
    assert.equal(parseServeArgs([], {}).quantCacheDir, null);
    assert.equal(parseServeArgs(['--quant-cache-dir', '/var/cache/loraserve'], {}).quantCacheDir, '/var/cache/loraserve');
    assert.equal(parseServeArgs([], { LORASERVE_QUANT_CACHE_DIR: '/tmp/q' }).quantCacheDir, '/tmp/q');
  });
});

describe('serve: the prefix cache flags', () => {
  it('on by default with a byte bound; --prefix-cache-bytes sets it, --no-prefix-cache turns it off', () => {
    assert.equal(parseServeArgs([], {}).prefixCacheBytes, 1024 * 1024 * 1024);
    assert.equal(parseServeArgs(['--prefix-cache-bytes', '1048576'], {}).prefixCacheBytes, 1048576);
    assert.equal(parseServeArgs([], { LORASERVE_PREFIX_CACHE_BYTES: '0' }).prefixCacheBytes, 0);
    assert.equal(parseServeArgs(['--no-prefix-cache', '--prefix-cache-bytes', '1048576'], {}).prefixCacheBytes, 0);
    assert.equal(parseServeArgs([], { LORASERVE_NO_PREFIX_CACHE: 'true' }).prefixCacheBytes, 0);
    assert.throws(() => parseServeArgs([], { LORASERVE_NO_PREFIX_CACHE: 'yes' }), /LORASERVE_NO_PREFIX_CACHE must be 1, true, 0 or false/);
  });
});

describe('serve: one table of flags', () => {
  it('--help shows every flag with its default and its variable, and each variable sets what its flag sets', () => {
    const usage = serveUsage();
    assert.match(usage, /--slots +adapter slots on the device \(default 8; LORASERVE_SLOTS\)/);
    assert.match(usage, /--host +bind address \(default 127\.0\.0\.1; LORASERVE_HOST\)/);
    assert.match(usage, /--keys +API keys file \(JSON\) \(default none; LORASERVE_KEYS\)/);
    assert.match(usage, /--lora-modules .*\(default all-linear; LORASERVE_LORA_MODULES\)/);
    const flags = [...usage.matchAll(/^ {2}--([a-z-]+) .*\(default .*; (LORASERVE_[A-Z_]+)\)$/gm)];
    assert.equal(
      flags.length,
      usage.split('\n').filter((l) => l.startsWith('  --')).length,
      'every flag line shows a default and a variable',
    );
    for (const [, flag, env] of flags) assert.equal(env, `LORASERVE_${flag!.toUpperCase().replaceAll('-', '_')}`);
    assert.deepEqual(
      parseServeArgs([], { LORASERVE_MAX_N: '3', LORASERVE_MODEL: '/m' }),
      parseServeArgs(['--max-n', '3', '--model', '/m'], {}),
    );
  });
});
