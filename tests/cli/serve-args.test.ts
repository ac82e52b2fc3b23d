import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseServeArgs } from '../../src/cli/serve.js';

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
