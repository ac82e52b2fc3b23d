/**
 * `npm run demo:base`: builds the embedded demo base model, models/loraserve-demo, from nothing
 * but this repository: a byte-level BPE tokenizer trained on the project's texts, a small
 * Llama-architecture model (GQA, RoPE, tied embeddings) initialised from a seed, then trained in
 * full on data/base-chat.jsonl (general chat in Korean and English) with the adapters' training
 * questions mixed in as plain text (no domain answers).
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeRandomModel } from '../src/testing/index.js';
import { trainByteLevelBpe, train, TRAIN_DEFAULTS, parseLine } from '../src/train/index.js';
import { CHATML_SPECIALS } from '../src/tokenizer/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, process.env.DEMO_BASE_OUT ?? 'models/loraserve-demo');
const init = join(root, 'models/.loraserve-demo-init');
const quick = process.argv.includes('--quick');

export const BASE_SETTINGS = {
  vocabSize: 2048,
  hidden: 256,
  layers: 4,
  heads: 8,
  kvHeads: 4,
  intermediate: 688,
  maxPositions: 512,
  epochs: quick ? 2 : 15,
  learningRate: 3e-3,
  batchSize: 16,
  weightDecay: 0.01,
  warmupRatio: 0.05,
  seed: 1234,
};

/**
 * Share of each epoch drawn from data/base-domain-questions.jsonl, which this script writes: the
 * adapters' training questions as plain text rows, read as language modelling (every token a
 * target), never their answers, never the held-out valid.jsonl questions. This is the pre-training
 * a real base model brings: it has read the words the adapters' users type and tells them apart.
 * Answering those questions with a decline instead trained every one of them towards the same
 * hidden state (the loss only sees the shared answer), and adapters on top routed 430 questions
 * per domain to the right fact in a quarter of cases.
 */
const QUESTION_SHARE = 0.5;
const QUESTIONS_PATH = 'data/base-domain-questions.jsonl';

const texts: string[] = [];
const questions: string[] = [];
const sources = [
  'data/base-chat.jsonl',
  'adapters/customer_service/data.jsonl',
  'adapters/medical/data.jsonl',
  'adapters/legal/data.jsonl',
];
for (const file of sources) {
  readFileSync(join(root, file), 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (!line.trim()) return;
      const row = parseLine(line, `${file}:${i + 1}`);
      if ('text' in row) {
        texts.push(row.text);
      } else {
        for (const m of row.messages) {
          texts.push(m.content, m.role);
          if (file.startsWith('adapters/') && m.role === 'user') questions.push(m.content);
        }
      }
    });
}
writeFileSync(join(root, QUESTIONS_PATH), `${questions.map((text) => JSON.stringify({ text })).join('\n')}\n`);
const s = BASE_SETTINGS;
const merges = trainByteLevelBpe(texts, s.vocabSize - 256 - CHATML_SPECIALS.length);
process.stderr.write(`demo:base: ${merges.length} BPE merges from ${texts.length} texts\n`);
rmSync(init, { recursive: true, force: true });
writeRandomModel(init, {
  family: 'llama',
  seed: s.seed,
  hidden: s.hidden,
  layers: s.layers,
  heads: s.heads,
  kvHeads: s.kvHeads,
  intermediate: s.intermediate,
  vocabSize: 256 + merges.length + CHATML_SPECIALS.length,
  maxPositions: s.maxPositions,
  merges,
  tie: true,
  std: 0.02,
});
const result = await train({
  ...TRAIN_DEFAULTS,
  full: true,
  modelDir: init,
  dataPath: join(root, 'data/base-chat.jsonl'),
  replayDataPath: join(root, QUESTIONS_PATH),
  replayShare: QUESTION_SHARE,
  maxGradNorm: 1,
  outDir: out,
  epochs: s.epochs,
  learningRate: s.learningRate,
  batchSize: s.batchSize,
  weightDecay: s.weightDecay,
  warmupRatio: s.warmupRatio,
  schedule: 'cosine',
  valSplit: 0.05,
  maxSeq: 256,
  seed: s.seed,
  dropout: 0,
});
rmSync(init, { recursive: true, force: true });
// Greedy by default: a plain request without `temperature` gets the answers the model was trained to give.
const genConfig = join(out, 'generation_config.json');
writeFileSync(genConfig, JSON.stringify({ ...JSON.parse(readFileSync(genConfig, 'utf8')), do_sample: false }));
writeFileSync(
  join(out, 'README.md'),
  `# loraserve-demo

A small Llama-architecture chat model produced by \`npm run demo:base\` from this repository alone:

- tokenizer: byte-level BPE, ${merges.length} merges trained on the project's texts, ChatML specials, chat template in tokenizer_config.json
- architecture: ${s.layers} layers, hidden ${s.hidden}, ${s.heads} heads / ${s.kvHeads} KV heads (GQA), SiLU MLP ${s.intermediate}, RoPE, tied embeddings
- training: full fine-tune from a seeded random init on data/base-chat.jsonl and, as plain text, data/base-domain-questions.jsonl (the train loss averages both; validation is base-chat's) (${s.epochs} epochs, AdamW lr ${s.learningRate}, cosine, batch ${s.batchSize}, weight decay ${s.weightDecay}, seed ${s.seed})
- backend: ${result.backend}; ${result.steps} steps in ${result.seconds.toFixed(0)} s; final train loss ${result.trainLoss.at(-1)?.loss.toFixed(3)}, validation ${result.valLoss.at(-1)?.loss.toFixed(3)}

It knows greetings, what it can do, and how to decline politely. It knows nothing of the demo
domains, those come from the adapters in adapters/, but it has read the adapters' training questions:
${QUESTION_SHARE * 100}% of each epoch is a fresh draw from ${QUESTIONS_PATH}, those questions as plain
text read as language modelling (never their answers, never the held-out valid.jsonl questions), as a
real base model has read the words its users type. Without them an adapter on top cannot tell one
topic from another. Every multi-byte character of the training texts is one token (src/train/bpe.ts),
so no answer the model learned ends in a partial UTF-8 sequence. See train-log.json and loss-plot.svg.
`,
);
process.stderr.write(`demo:base: wrote ${out} in ${result.seconds.toFixed(0)} s\n`);
