import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadHfModel, encodeSafetensors, type HfModel } from '../../src/model/index.js';
import { parseAdapter, peftConfig } from '../../src/lora/index.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { tempDir } from '../helpers/adapters.js';

/** Adapter tensors for the tiny Llama's q_proj/v_proj at rank r (hidden 32, kv 16). */
function weightsFor(layers: number[], r: number, extra: Record<string, { shape: number[] }> = {}, modules = ['q_proj', 'v_proj']) {
  const t: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  const out = { q_proj: 32, k_proj: 16, v_proj: 16, o_proj: 32 } as Record<string, number>;
  for (const l of layers) {
    for (const m of modules) {
      t[`base_model.model.model.layers.${l}.self_attn.${m}.lora_A.weight`] = {
        dtype: 'F32',
        shape: [r, 32],
        data: new Float32Array(r * 32).fill(0.01),
      };
      t[`base_model.model.model.layers.${l}.self_attn.${m}.lora_B.weight`] = {
        dtype: 'F32',
        shape: [out[m]!, r],
        data: new Float32Array(out[m]! * r).fill(0.01),
      };
    }
  }
  for (const [k, { shape }] of Object.entries(extra))
    t[k] = { dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
  return encodeSafetensors(t);
}

describe('PEFT adapter validation', () => {
  let model: HfModel;
  before(() => {
    model = loadHfModel(writeRandomModel(join(tempDir(), 'm'), { family: 'llama', seed: 3 }).dir);
  });
  const good = () => peftConfig({ r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] });
  const parse = (config: unknown, weights = weightsFor([0, 1], 4), maxRank = 8) =>
    parseAdapter(typeof config === 'string' ? config : JSON.stringify(config), weights, model, maxRank);

  it('accepts DoRA magnitude vectors under every name PEFT has saved them with', () => {
    for (const suffix of ['lora_magnitude_vector.weight', 'lora_magnitude_vector', 'lora_magnitude_vector.default.weight']) {
      const magnitudes = Object.fromEntries(
        [0, 1].flatMap((l) =>
          [
            ['q_proj', 32],
            ['v_proj', 16],
          ].map(([m, out]) => [`base_model.model.model.layers.${l}.self_attn.${m}.${suffix}`, { shape: [out as number] }]),
        ),
      );
      const a = parse({ ...good(), use_dora: true }, weightsFor([0, 1], 4, magnitudes));
      assert.equal(a.modules.get('model.layers.1.self_attn.v_proj')!.dora!.length, 16, suffix);
    }
  });

  it('accepts a valid adapter, with and without the ".default" adapter-name infix', () => {
    const a = parse(good());
    assert.equal(a.modules.size, 4);
    assert.deepEqual(a.summary.targetModules, ['q_proj', 'v_proj']);
    const infix: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const l of [0, 1])
      for (const m of ['q_proj', 'v_proj']) {
        const out = m === 'q_proj' ? 32 : 16;
        infix[`base_model.model.model.layers.${l}.self_attn.${m}.lora_A.default.weight`] = {
          dtype: 'F32',
          shape: [4, 32],
          data: new Float32Array(128),
        };
        infix[`base_model.model.model.layers.${l}.self_attn.${m}.lora_B.default.weight`] = {
          dtype: 'F32',
          shape: [out, 4],
          data: new Float32Array(out * 4),
        };
      }
    assert.equal(parse(good(), encodeSafetensors(infix)).modules.size, 4);
  });

  const cases: Array<[string, () => unknown, string, RegExp]> = [
    ['config that is not JSON', () => parse('{not json'), 'invalid_adapter_config', /not valid JSON/],
    ['peft_type other than LORA', () => parse({ ...good(), peft_type: 'IA3' }), 'unsupported_adapter_feature', /peft_type "IA3"/],
    ['task_type that is not causal LM', () => parse({ ...good(), task_type: 'SEQ_CLS' }), 'invalid_adapter_config', /task_type "SEQ_CLS"/],
    [
      'use_dora without magnitude vectors',
      () => parse({ ...good(), use_dora: true }),
      'invalid_adapter_weights',
      /lacks the DoRA magnitude vector .* use_dora is true/,
    ],
    [
      'use_dora together with lora_bias',
      () => parse({ ...good(), use_dora: true, lora_bias: true }),
      'unsupported_adapter_feature',
      /lora_bias=true is not supported together with use_dora/,
    ],
    [
      'a DoRA magnitude vector of the wrong length',
      () =>
        parse(
          { ...good(), use_dora: true },
          weightsFor(
            [0, 1],
            4,
            Object.fromEntries(
              [0, 1].flatMap((l) =>
                ['q_proj', 'v_proj'].map((m) => [
                  `base_model.model.model.layers.${l}.self_attn.${m}.lora_magnitude_vector.weight`,
                  { shape: [7] },
                ]),
              ),
            ),
          ),
        ),
      'invalid_adapter_weights',
      /has 7 values, the layer has 32 outputs/,
    ],
    [
      'DoRA on an embedding layer',
      () =>
        parse(
          { ...good(), use_dora: true },
          weightsFor([0, 1], 4, { 'base_model.model.model.embed_tokens.lora_magnitude_vector': { shape: [32] } }),
        ),
      'unsupported_adapter_feature',
      /not a linear layer; DoRA is served on linear layers only/,
    ],
    ['modules_to_save', () => parse({ ...good(), modules_to_save: ['lm_head'] }), 'unsupported_adapter_feature', /modules_to_save/],
    ['non-integer r', () => parse({ ...good(), r: 2.5 }), 'invalid_adapter_config', /"r" must be an integer \(got a fractional number\)/],
    ['negative r', () => parse({ ...good(), r: -2 }), 'invalid_adapter_config', /"r" must be a positive integer/],
    ['bad bias mode', () => parse({ ...good(), bias: 'some' }), 'invalid_adapter_config', /"bias" must be/],
    ['bad target_modules type', () => parse({ ...good(), target_modules: 3 }), 'invalid_adapter_config', /"target_modules" must be/],
    ['invalid target regex', () => parse({ ...good(), target_modules: '(' }), 'invalid_adapter_config', /regex "\(" is invalid/],
    ['invalid rank_pattern', () => parse({ ...good(), rank_pattern: { q_proj: -1 } }), 'invalid_adapter_config', /rank_pattern/],
    [
      'targets matching nothing',
      () => parse({ ...good(), target_modules: ['c_attn'] }),
      'adapter_base_mismatch',
      /matches no linear layer/,
    ],
    [
      'rank above the server maximum',
      () => parse(good(), weightsFor([0, 1], 4), 2),
      'adapter_rank_too_large',
      /rank 4 .* exceeds this server's max LoRA rank 2/,
    ],
    [
      'weights of a wider base model',
      () =>
        parse(
          good(),
          encodeSafetensors({
            'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': { dtype: 'F32', shape: [4, 64], data: new Float32Array(256) },
            'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight': { dtype: 'F32', shape: [32, 4], data: new Float32Array(128) },
          }),
        ),
      'adapter_base_mismatch',
      /do not fit the base layer/,
    ],
    [
      'a module the base does not have',
      () => parse(good(), weightsFor([0, 1], 4, { 'base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight': { shape: [4, 32] } })),
      'adapter_base_mismatch',
      /layers\.7\.self_attn\.q_proj", which the base model does not have/,
    ],
    [
      'rank in the weights differing from the config',
      () => parse({ ...good(), r: 8 }),
      'invalid_adapter_weights',
      /lora_A has rank 4 .* config gives rank 8/,
    ],
    [
      'a targeted module without weights',
      () => parse(good(), weightsFor([0], 4)),
      'invalid_adapter_weights',
      /lacks lora_A\.weight for targeted module "model\.layers\.1\.self_attn\.q_proj"/,
    ],
    [
      'weights for an untargeted module',
      () => parse({ ...good(), target_modules: ['q_proj'] }),
      'invalid_adapter_weights',
      /does not target/,
    ],
    [
      'a key outside PEFT naming',
      () => parse(good(), weightsFor([0, 1], 4, { 'model.layers.0.foo': { shape: [1] } })),
      'invalid_adapter_weights',
      /does not start with "base_model\.model\."/,
    ],
    [
      'DoRA magnitude vectors without use_dora',
      () =>
        parse(good(), weightsFor([0, 1], 4, { 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector': { shape: [32] } })),
      'invalid_adapter_weights',
      /DoRA magnitude vector .* use_dora is false/,
    ],
    [
      'embedding LoRA',
      () => parse(good(), weightsFor([0, 1], 4, { 'base_model.model.model.embed_tokens.lora_embedding_A': { shape: [4, 264] } })),
      'unsupported_adapter_feature',
      /embedding/,
    ],
    [
      'a trained bias with bias "none"',
      () => parse(good(), weightsFor([0, 1], 4, { 'base_model.model.model.layers.0.self_attn.q_proj.bias': { shape: [32] } })),
      'invalid_adapter_weights',
      /bias is "none"/,
    ],
    [
      'a trained layer-norm bias (bias "all")',
      () => parse({ ...good(), bias: 'all' }, weightsFor([0, 1], 4, { 'base_model.model.model.norm.bias': { shape: [32] } })),
      'unsupported_adapter_feature',
      /not linear/,
    ],
    ['a broken safetensors file', () => parse(good(), new Uint8Array(4)), 'invalid_safetensors', /shorter than the 8-byte/],
    [
      'a lora_B bias without lora_bias',
      () => parse(good(), weightsFor([0, 1], 4, { 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias': { shape: [32] } })),
      'invalid_adapter_weights',
      /lora_bias is false/,
    ],
    [
      'a layer the server serves no LoRA on',
      () => parseAdapter(JSON.stringify(good()), weightsFor([0, 1], 4), model, 8, new Set(['model.layers.0.self_attn.q_proj'])),
      'unsupported_adapter_feature',
      /does not serve LoRA on; restart it with that module in --lora-modules/,
    ],
  ];
  it('checks the type of every PEFT field it reads before its meaning: a 422 names the field and the type it needs', () => {
    const wrong: Array<[string, unknown, RegExp]> = [
      // npm run fuzz -- --seed 99: a task_type whose toString made the message formatting throw (a 500).
      ['task_type', { toString: 'CAUSAL_LM' }, /"task_type" must be a string or null \(got an object\)/],
      ['task_type', ['CAUSAL_LM'], /"task_type" must be a string or null \(got a list\)/],
      ['peft_type', { LORA: true }, /"peft_type" must be a string or null \(got an object\)/],
      ['r', '8', /"r" must be an integer \(got a string\)/],
      ['lora_alpha', null, /"lora_alpha" must be a number \(got null\)/],
      ['lora_dropout', '0.1', /"lora_dropout" must be a number/],
      ['use_rslora', 'true', /"use_rslora" must be a boolean \(got a string\)/],
      ['use_dora', 1, /"use_dora" must be a boolean \(got a number\)/],
      ['lora_bias', 'yes', /"lora_bias" must be a boolean/],
      ['fan_in_fan_out', [], /"fan_in_fan_out" must be a boolean \(got a list\)/],
      ['bias', false, /"bias" must be a string \(got a boolean\)/],
      ['target_modules', ['q_proj', 7], /"target_modules" must be a string or a list of strings or null/],
      ['layers_to_transform', [0, 'one'], /"layers_to_transform" must be an integer or a list of integers or null/],
      ['layers_pattern', { layers: 1 }, /"layers_pattern" must be a string or a list of strings or null/],
      ['rank_pattern', { q_proj: '4' }, /"rank_pattern" must be an object of pattern → number or null/],
      ['alpha_pattern', [], /"alpha_pattern" must be an object of pattern → number or null/],
      ['modules_to_save', 'lm_head', /"modules_to_save" must be a list of strings or null \(got a string\)/],
      ['base_model_name_or_path', 3, /"base_model_name_or_path" must be a string or null/],
      ['inference_mode', 'false', /"inference_mode" must be a boolean/],
      ['init_lora_weights', 0, /"init_lora_weights" must be a boolean or a string/],
      ['use_qalora', null, /"use_qalora" must be a boolean \(got null\)/],
    ];
    for (const [field, value, message] of wrong) {
      assert.throws(
        () => parse({ ...good(), [field]: value }),
        (err: Error & { code?: string; status?: number; param?: string }) => {
          assert.deepEqual([err.code, err.status, err.param], ['invalid_adapter_config', 422, field], `${field}: ${err.message}`);
          assert.match(err.message, message);
          return true;
        },
        field,
      );
    }
  });

  for (const [what, run, code, message] of cases) {
    it(`rejects ${what} with ${code}`, () => {
      assert.throws(run, (err: Error & { code?: string; status?: number }) => {
        assert.equal(err.code, code, err.message);
        assert.ok(err.status! >= 400 && err.status! < 500);
        assert.match(err.message, message);
        return true;
      });
    });
  }
});
