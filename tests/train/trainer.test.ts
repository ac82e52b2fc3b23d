import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, isAbsolute } from 'node:path';
import { writeRandomModel } from '../../src/testing/index.js';
import { loadHfModel, parseSafetensorsBuffer } from '../../src/model/index.js';
import { Engine } from '../../src/engine/index.js';
import { initTf, train, TfCausalLM, TRAIN_DEFAULTS, loadDataset, type TrainResult } from '../../src/train/index.js';
import { Tokenizer } from '../../src/tokenizer/index.js';
import { tempDir } from '../helpers/adapters.js';
import { prefill } from '../helpers/drive.js';
import { relError } from '../helpers/reference.js';

const FIVE = [
  { instruction: '환불 정책은 어떻게 되나요?', input: '', output: '구매 후 14일 이내 미사용 제품은 전액 환불됩니다.' },
  { instruction: '배송은 얼마나 걸리나요?', output: '일반 배송은 2-3일 걸립니다.' },
  {
    messages: [
      { role: 'user', content: 'hello' },
      { role: 'assistant', content: 'Hi! How can I help?' },
    ],
  },
  { instruction: 'Membership?', input: 'gold', output: 'Gold members get 10% off.' },
  {
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: '두통이 있어요' },
      { role: 'assistant', content: '수분을 섭취하세요.' },
    ],
  },
];

describe('loraserve train (TensorFlow.js)', () => {
  let root: string;
  let modelDir: string;
  let dataPath: string;
  let result: TrainResult;
  const outDir = () => join(root, 'adapter');

  before(async () => {
    root = tempDir();
    modelDir = join(root, 'base');
    writeRandomModel(modelDir, { family: 'llama', seed: 21, heads: 4, kvHeads: 2 });
    dataPath = join(root, 'data.jsonl');
    writeFileSync(dataPath, FIVE.map((r) => JSON.stringify(r)).join('\n'));
    result = await train({
      ...TRAIN_DEFAULTS,
      modelDir,
      dataPath,
      outDir: outDir(),
      r: 4,
      alpha: 8,
      targetModules: ['q_proj', 'v_proj'],
      epochs: 15,
      learningRate: 1e-2,
      batchSize: 5,
      quiet: true,
    });
  });

  it('lowers the loss on a 5-example dataset', () => {
    const first = result.trainLoss[0]!.loss;
    const last = result.trainLoss.at(-1)!.loss;
    assert.ok(last < first * 0.9, `loss ${first} → ${last}`);
    assert.match(result.backend, /wasm|tfjs-node/);
  });

  it('writes a PEFT adapter, a train log and a loss plot', () => {
    const config = JSON.parse(readFileSync(join(outDir(), 'adapter_config.json'), 'utf8'));
    assert.equal(config.peft_type, 'LORA');
    assert.equal(config.task_type, 'CAUSAL_LM');
    assert.equal(config.r, 4);
    assert.equal(config.lora_alpha, 8);
    assert.deepEqual(config.target_modules, ['q_proj', 'v_proj']);
    assert.equal(config.base_model_name_or_path, 'base');
    const file = parseSafetensorsBuffer(readFileSync(join(outDir(), 'adapter_model.safetensors')));
    const names = [...file.header.tensors.keys()].sort();
    assert.deepEqual(
      names,
      ['0', '1']
        .flatMap((l) =>
          ['q_proj', 'v_proj'].flatMap((m) =>
            ['A', 'B'].map((ab) => `base_model.model.model.layers.${l}.self_attn.${m}.lora_${ab}.weight`),
          ),
        )
        .sort(),
    );
    assert.ok(
      file.readF32('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight').some((v) => v !== 0),
      'lora_B trained away from its zero init',
    );
    const log = JSON.parse(readFileSync(join(outDir(), 'train-log.json'), 'utf8'));
    assert.equal(log.trainLoss.length, result.steps);
    for (const key of ['modelDir', 'dataPath', 'outDir'])
      assert.ok(!isAbsolute(log.settings[key]), `train-log.json records ${key} relative, not ${log.settings[key]}`);
    assert.match(readFileSync(join(outDir(), 'loss-plot.svg'), 'utf8'), /^<svg[\s\S]*<path/);
  });

  it('the written adapter loads back into TensorFlow.js and ONNX Runtime with the same logits (1e-4)', async () => {
    const { tf } = await initTf();
    const model = loadHfModel(modelDir);
    const engine = await Engine.create({ modelDir, slots: 1, maxRank: 8 });
    try {
      const files = [
        readFileSync(join(outDir(), 'adapter_config.json'), 'utf8'),
        readFileSync(join(outDir(), 'adapter_model.safetensors')),
      ] as const;
      engine.slots!.write(1, engine.parseAdapter(files[0], files[1]));
      const weights = parseSafetensorsBuffer(files[1]);
      const lm = new TfCausalLM(
        model,
        'lora',
        { r: 4, alpha: 8, dropout: 0, useRslora: false, modules: model.linears.filter((m) => /q_proj|v_proj/.test(m.name)) },
        1,
      );
      const tokens = [12, 200, 45, 7, 99, 3];
      const tfLogits = (): Float32Array =>
        tf.tidy(() => {
          const all = lm.forward(tf.tensor2d([tokens], [1, tokens.length], 'int32'));
          return tf.slice(all, [0, tokens.length - 1, 0], [1, 1, -1]).dataSync() as Float32Array;
        });
      const base = tfLogits();
      assert.ok(relError(base, (await prefill(engine, [tokens], [0])).logits[0]!) < 1e-4, 'without adapter');
      for (const [name, l] of lm.lora) {
        l.At.assign(tf.transpose(tf.tensor2d(weights.readF32(`base_model.model.${name}.lora_A.weight`), [4, l.module.inFeatures])));
        l.Bt.assign(tf.transpose(tf.tensor2d(weights.readF32(`base_model.model.${name}.lora_B.weight`), [l.module.outFeatures, 4])));
      }
      const adapted = tfLogits();
      const served = (await prefill(engine, [tokens], [1])).logits[0]!;
      assert.ok(relError(adapted, served) < 1e-4, `with adapter: ${relError(adapted, served)}`);
      assert.ok(relError(adapted, base) > 1e-4, 'the adapter changes the logits');
      lm.dispose();
    } finally {
      await engine.close();
      model.weights.close();
    }
  });

  it('full mode trains every weight and writes a model folder that serves', async () => {
    const out = join(root, 'full');
    const r = await train({
      ...TRAIN_DEFAULTS,
      modelDir,
      dataPath,
      outDir: out,
      full: true,
      epochs: 3,
      learningRate: 3e-3,
      batchSize: 5,
      quiet: true,
    });
    assert.ok(r.trainLoss.at(-1)!.loss < r.trainLoss[0]!.loss);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'train-log.json'])
      assert.ok(existsSync(join(out, f)), f);
    const engine = await Engine.create({ modelDir: out, slots: 0 });
    const gen = engine.generate({
      promptTokens: engine.tokenizer.applyChatTemplate([{ role: 'user', content: 'hello' }]),
      maxTokens: 4,
      sampling: { temperature: 0 },
    });
    assert.equal((await gen.result).completionTokens <= 4, true);
    await engine.close();
  });

  it('a separate validation file is measured every epoch and every training line trains', async () => {
    const valPath = join(root, 'valid.jsonl');
    writeFileSync(
      valPath,
      JSON.stringify({ instruction: '환불 절차가 궁금합니다', output: '구매 후 14일 이내 미사용 제품은 전액 환불됩니다.' }),
    );
    const r = await train({
      ...TRAIN_DEFAULTS,
      modelDir,
      dataPath,
      valDataPath: valPath,
      outDir: join(root, 'with-val'),
      r: 4,
      alpha: 8,
      epochs: 2,
      learningRate: 1e-2,
      batchSize: 5,
      quiet: true,
    });
    assert.deepEqual(r.heldOutLines, []);
    assert.deepEqual(
      r.valLoss.map((v) => v.epoch),
      [0, 1, 2],
    );
    assert.ok(r.valLoss.every((v) => Number.isFinite(v.loss) && v.loss > 0));
    assert.equal(r.steps, 2, 'all 5 lines train: one batch of 5 per epoch');
  });

  it('replayed general data fills its share of every epoch, a fresh draw each time; validation stays the task data', async () => {
    const replayPath = join(root, 'replay.jsonl');
    const general = Array.from({ length: 7 }, (_, i) =>
      JSON.stringify({
        messages: [
          { role: 'user', content: `hello ${i}` },
          { role: 'assistant', content: `Hi ${i}!` },
        ],
      }),
    );
    writeFileSync(replayPath, general.join('\n'));
    const losses: number[] = [];
    const r = await train({
      ...TRAIN_DEFAULTS,
      modelDir,
      dataPath,
      valDataPath: dataPath,
      replayDataPath: replayPath,
      replayShare: 0.5,
      outDir: join(root, 'with-replay'),
      r: 4,
      alpha: 8,
      epochs: 3,
      learningRate: 1e-2,
      batchSize: 5,
      onStep: (s) => losses.push(s.loss),
      quiet: true,
    });
    // 5 task lines and, at a share of one half, 5 replayed ones: two batches of 5 per epoch.
    assert.equal(r.steps, 6);
    assert.equal(losses.length, 6);
    const log = JSON.parse(readFileSync(join(root, 'with-replay', 'train-log.json'), 'utf8'));
    assert.equal(isAbsolute(log.settings.replayDataPath), false);
    assert.equal(log.settings.replayShare, 0.5);
    await assert.rejects(
      train({
        ...TRAIN_DEFAULTS,
        modelDir,
        dataPath,
        replayDataPath: replayPath,
        replayShare: 1,
        outDir: join(root, 'bad-replay'),
        quiet: true,
      }),
      /replayShare must be in \[0, 1\)/,
    );
  });

  it('maxGradNorm clips the global gradient norm: clipped to nothing, the loss does not move', async () => {
    const run = async (maxGradNorm: number | undefined) => {
      const losses: number[] = [];
      await train({
        ...TRAIN_DEFAULTS,
        modelDir,
        dataPath,
        valDataPath: dataPath,
        outDir: join(root, `clipped-${maxGradNorm}`),
        r: 4,
        alpha: 8,
        epochs: 4,
        learningRate: 1e-2,
        batchSize: 5,
        maxGradNorm,
        dropout: 0,
        onStep: (s) => losses.push(s.loss),
        quiet: true,
      });
      return losses;
    };
    // Far below Adam's epsilon (1e-8): each update is about 1e-4 of a normal one.
    const clipped = await run(1e-12);
    assert.equal(clipped.length, 4);
    assert.ok(Math.abs(clipped.at(-1)! - clipped[0]!) < 1e-3 * clipped[0]!, JSON.stringify(clipped));
    const free = await run(undefined);
    assert.equal(free[0], clipped[0], 'the same start');
    assert.ok(free.at(-1)! < 0.99 * free[0]!, `unclipped, the loss falls: ${JSON.stringify(free)}`);
  });

  it('onEpoch reports each epoch and saves the adapter as it stands; an abort stops between steps and writes nothing', async () => {
    const epochs: Array<{ epoch: number; step: number; valLoss: number | null }> = [];
    const out = join(root, 'epochs');
    await train({
      ...TRAIN_DEFAULTS,
      modelDir,
      dataPath,
      valDataPath: dataPath,
      outDir: out,
      r: 4,
      alpha: 8,
      epochs: 2,
      batchSize: 5,
      quiet: true,
      onEpoch: async ({ epoch, step, valLoss, saveAdapter }) => {
        epochs.push({ epoch, step, valLoss });
        await saveAdapter(join(out, `epoch-${epoch}`));
      },
    });
    assert.deepEqual(
      epochs.map((e) => [e.epoch, e.step]),
      [
        [1, 1],
        [2, 2],
      ],
    );
    assert.ok(epochs.every((e) => e.valLoss !== null && e.valLoss > 0));
    const saved = readFileSync(join(out, 'epoch-2', 'adapter_model.safetensors'));
    assert.deepEqual(saved, readFileSync(join(out, 'adapter_model.safetensors')), 'the last epoch saved what train() wrote');

    const stop = new AbortController();
    const steps: number[] = [];
    const aborted = join(root, 'aborted');
    await assert.rejects(
      train({
        ...TRAIN_DEFAULTS,
        modelDir,
        dataPath,
        outDir: aborted,
        epochs: 50,
        batchSize: 1,
        quiet: true,
        signal: stop.signal,
        onStep: ({ step }) => {
          steps.push(step);
          if (step === 2) stop.abort(new Error('stop here'));
        },
      }),
      /stop here/,
    );
    assert.deepEqual(steps, [1, 2], 'no step after the abort');
    assert.equal(existsSync(aborted), false);
  });

  it('a bad dataset line gets an error naming the line', async () => {
    const tokenizer = await Tokenizer.load(modelDir);
    const bad = join(root, 'bad.jsonl');
    const cases: Array<[string, RegExp]> = [
      ['{"instruction": "x", "output": "y"}\n{oops', /bad\.jsonl:2: not valid JSON/],
      [
        '{"instruction": "x", "output": "y"}\n\n{"question": "x"}',
        /bad\.jsonl:3: expected "messages" \(chat\), "instruction" and "output" \(Alpaca\) or "text"/,
      ],
      ['{"messages": [{"role": "user", "content": "hi"}]}', /bad\.jsonl:1: no assistant message/],
      ['{"messages": [{"role": "wizard", "content": "hi"}]}', /bad\.jsonl:1: messages\[0\] needs a role/],
      ['{"text": ""}', /bad\.jsonl:1: "text" is empty/],
    ];
    for (const [text, message] of cases) {
      writeFileSync(bad, text);
      assert.throws(
        () => loadDataset(bad, tokenizer, 256),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'invalid_dataset');
          assert.match(err.message, message);
          return true;
        },
      );
    }
  });

  it('the loss mask covers the assistant turns only', async () => {
    const tokenizer = await Tokenizer.load(modelDir);
    const [ex] = loadDataset(dataPath, tokenizer, 256);
    const masked = ex!.tokens.filter((_, i) => ex!.lossMask[i]);
    assert.equal(tokenizer.decode(masked).trim(), FIVE[0]!.output);
  });

  it('a text row is language modelling: every token after the first is a target, and EOS ends it', async () => {
    const tokenizer = await Tokenizer.load(modelDir);
    const path = join(root, 'text.jsonl');
    writeFileSync(path, JSON.stringify({ text: '환불 정책은 어떻게 되나요?' }));
    const [ex] = loadDataset(path, tokenizer, 256);
    assert.deepEqual(ex!.tokens, [...tokenizer.encodePrompt('환불 정책은 어떻게 되나요?'), tokenizer.eosTokenId]);
    assert.deepEqual([...ex!.lossMask], [0, ...ex!.tokens.slice(1).map(() => 1)]);
  });
});
