import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSafetensors, parseSafetensorsBuffer, SafetensorsFile } from '../../src/model/index.js';
import { f32ToBf16, f32ToF16 } from '../../src/util/half.js';
import { brokenSafetensors } from '../helpers/broken-safetensors.js';
import { tempDir } from '../helpers/adapters.js';

describe('strict safetensors reader', () => {
  it('round-trips F32, F16 and BF16 tensors through a file, reading one tensor at a time', () => {
    const values = new Float32Array([0, 1, -2.5, 0.15625, 65504, -1e-3]);
    const bytes = encodeSafetensors(
      {
        f32: { dtype: 'F32', shape: [2, 3], data: values },
        f16: { dtype: 'F16', shape: [6], data: f32ToF16(values) },
        bf16: { dtype: 'BF16', shape: [3, 2], data: f32ToBf16(values) },
      },
      { format: 'pt' },
    );
    const path = join(tempDir(), 'x.safetensors');
    writeFileSync(path, bytes);
    const f = SafetensorsFile.open(path);
    assert.deepEqual(f.info('f32').shape, [2, 3]);
    assert.deepEqual(Array.from(f.readF32('f32')), Array.from(values));
    const f16 = f.readF32('f16');
    const bf16 = f.readF32('bf16');
    values.forEach((v, i) => {
      assert.ok(Math.abs(f16[i]! - v) <= Math.abs(v) * 1e-3 + 1e-7, `f16 ${v} → ${f16[i]}`);
      assert.ok(Math.abs(bf16[i]! - v) <= Math.abs(v) * 8e-3, `bf16 ${v} → ${bf16[i]}`);
    });
    assert.equal(f.header.metadata.format, 'pt');
    assert.equal((f.header.dataStart - 8) % 8, 0, 'header padded to 8 bytes');
    f.close();
  });

  for (const [rule, { bytes, message }] of Object.entries(brokenSafetensors())) {
    it(`refuses a file whose ${rule}`, () => {
      assert.throws(
        () => parseSafetensorsBuffer(bytes, 'upload'),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'invalid_safetensors');
          assert.match(err.message, message);
          return true;
        },
      );
      const path = join(tempDir(), 'bad.safetensors');
      writeFileSync(path, bytes);
      assert.throws(() => SafetensorsFile.open(path), { code: 'invalid_safetensors' });
    });
  }
});
