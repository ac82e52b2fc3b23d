/**
 * Proof that loraserve and llama.cpp run the same model: a random model and adapter written as
 * Hugging Face + PEFT folders (what loraserve serves) and as GGUF (what llama.cpp loads), greedy
 * continuations of the same prompt ids from both, with and without the adapter, compared.
 *
 * loraserve's public API returns text, not token ids, so llama.cpp's ids are decoded with the
 * model's own tokenizer and the texts compared; `agreeingTokens` is the longest run of llama.cpp
 * tokens whose text is a prefix of loraserve's.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../engine/index.js';
import { loadHfModel } from '../model/index.js';
import { CONFIG_FILE, WEIGHTS_FILE } from '../lora/index.js';
import { writeGgufLora, writeGgufModel, writeRandomAdapter, writeRandomModel, type Family } from '../testing/index.js';
import { rng } from '../util/rng.js';
import { llamaGreedyTokens } from './llama-peer.js';

export interface AgreementOptions {
  family: Family;
  /** Scratch folder for the model, the adapter and their GGUF files. */
  dir: string;
  /** Greedy steps compared per prompt. */
  tokens: number;
  prompts?: number;
  promptLength?: number;
  hidden?: number;
  layers?: number;
  threads?: number;
  seed?: number;
}

export interface AgreementCase {
  prompt: number[];
  adapter: boolean;
  loraserveText: string;
  llamaTokens: number[];
  llamaText: string;
  agreeingTokens: number;
  agree: boolean;
}

export interface AgreementReport {
  family: Family;
  tokens: number;
  cases: AgreementCase[];
  allAgree: boolean;
  /** The adapter changed some continuation on both sides (else agreeing with it proves nothing). */
  adapterChangesOutput: boolean;
}

const TARGETS: Record<Family, { modules: string[]; fanInFanOut: boolean }> = {
  gpt2: { modules: ['c_attn', 'attn.c_proj'], fanInFanOut: true },
  llama: { modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], fanInFanOut: false },
  qwen2: { modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], fanInFanOut: false },
};

export async function peerAgreement(o: AgreementOptions): Promise<AgreementReport> {
  const seed = o.seed ?? 5;
  const hidden = o.hidden ?? 64;
  const modelDir = join(o.dir, `${o.family}-random`);
  writeRandomModel(modelDir, { family: o.family, seed, hidden, layers: o.layers ?? 2, heads: 4, kvHeads: 2, intermediate: 2 * hidden });
  const model = loadHfModel(modelDir);
  const adapterDir = join(o.dir, 'adapter');
  const targets = TARGETS[o.family];
  await writeRandomAdapter(
    adapterDir,
    model,
    { r: 8, lora_alpha: 16, target_modules: targets.modules, fan_in_fan_out: targets.fanInFanOut },
    seed + 1,
    0.2,
  );
  const ggufModel = join(o.dir, 'model-f32.gguf');
  const ggufAdapter = join(o.dir, 'adapter-f32.gguf');
  writeGgufModel(modelDir, ggufModel, 'F32');
  writeGgufLora(adapterDir, model, ggufAdapter);
  model.weights.close();

  const r = rng(seed + 2);
  const prompts = Array.from({ length: o.prompts ?? 3 }, () =>
    Array.from({ length: o.promptLength ?? 8 }, () => Math.floor(r.next() * 256)),
  );
  // One thread: correctness only, and ggml's spinning barrier degrades badly on a shared, busy box.
  const threads = o.threads ?? 1;
  const llama = {
    base: await llamaGreedyTokens({ ggufModel, prompts, maxTokens: o.tokens, threads }),
    adapter: await llamaGreedyTokens({ ggufModel, ggufAdapter, prompts, maxTokens: o.tokens, threads }),
  };

  const engine = await Engine.create({ modelDir, slots: 1, maxRank: 16, loraModules: targets.modules, threads });
  try {
    engine.slots!.write(
      1,
      engine.parseAdapter(readFileSync(join(adapterDir, CONFIG_FILE), 'utf8'), readFileSync(join(adapterDir, WEIGHTS_FILE))),
    );
    const cases: AgreementCase[] = [];
    for (const adapter of [false, true]) {
      for (const [i, prompt] of prompts.entries()) {
        const { text } = await engine.generate({
          promptTokens: prompt,
          slot: adapter ? 1 : 0,
          maxTokens: o.tokens,
          ignoreEos: true,
          sampling: { temperature: 0 },
        }).result;
        const llamaTokens = (adapter ? llama.adapter : llama.base)[i]!;
        let agreeingTokens = 0;
        // A prefix may end inside a UTF-8 sequence, which decodes to U+FFFD until completed.
        const prefixText = (n: number) => engine.tokenizer.decode(llamaTokens.slice(0, n)).replace(/\uFFFD+$/, '');
        while (agreeingTokens < llamaTokens.length && text.startsWith(prefixText(agreeingTokens + 1))) agreeingTokens++;
        const llamaText = engine.tokenizer.decode(llamaTokens);
        cases.push({ prompt, adapter, loraserveText: text, llamaTokens, llamaText, agreeingTokens, agree: llamaText === text });
      }
    }
    const base = cases.filter((c) => !c.adapter);
    const adapted = cases.filter((c) => c.adapter);
    return {
      family: o.family,
      tokens: o.tokens,
      cases,
      allAgree: cases.every((c) => c.agree),
      adapterChangesOutput: adapted.some((c, i) => c.loraserveText !== base[i]!.loraserveText && c.llamaText !== base[i]!.llamaText),
    };
  } finally {
    await engine.close();
  }
}
