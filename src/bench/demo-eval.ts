/**
 * The embedded demo's quality figures (issue 13), measured with greedy decoding through the engine
 * as the server runs it: the base model in slot 0 and each demo adapter in a slot of its own.
 *
 * - held-out accuracy: share of a domain's valid.jsonl questions (never trained on) whose answer
 *   through that domain's adapter holds the line's `key` fact;
 * - general behaviour: share of greeting and capability prompts (the trained ones of
 *   data/base-chat.jsonl and the held-out ones of data/general-eval.json) whose answer through an
 *   adapter is, word for word, one of the answers base-chat gives to that kind of prompt — so no
 *   domain prefix and no domain content;
 * - U+FFFD: answers holding a replacement character, over every prompt above (trained and held-out
 *   questions of every domain, greetings) through the base model and every adapter.
 *
 * `npm run demo:adapters` and scripts/demo-eval.ts print and record these; tests/demo asserts them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../engine/index.js';
import { readAdapterFolder } from '../lora/index.js';

export const DEMO_DOMAINS = ['customer_service', 'medical', 'legal'] as const;
export type DemoDomain = (typeof DEMO_DOMAINS)[number];
export const DEMO_BASE = 'loraserve-demo';

export interface DomainQuestion {
  instruction: string;
  key: string;
}

interface GeneralPrompt {
  prompt: string;
  kind: string;
}

export interface Score {
  hits: number;
  total: number;
  /** hits / total */
  share: number;
}

export interface DemoEvalReport {
  maxTokens: number;
  domains: Record<DemoDomain, { trained: Score; heldOut: Score; heldOutMisses: Array<{ question: string; key: string; answer: string }> }>;
  general: {
    /** Prompts whose base-model answer is of the prompt's kind. */
    base: Score;
    /** (prompt, adapter) pairs whose answer is of the prompt's kind; per adapter. */
    adapters: Record<DemoDomain, Score>;
    heldOutPrompts: number;
    trainedPrompts: number;
    failures: Array<{ model: string; prompt: string; kind: string; answer: string }>;
  };
  replacementCharacters: { answers: number; withFffd: number; examples: Array<{ model: string; prompt: string; answer: string }> };
}

const jsonl = <T>(path: string): T[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);

export function domainQuestions(root: string, domain: DemoDomain, file: 'data.jsonl' | 'valid.jsonl'): DomainQuestion[] {
  return jsonl<DomainQuestion>(join(root, 'adapters', domain, file));
}

/** Greeting and capability prompts, trained (from base-chat) and held out, with the answers of each kind. */
export function generalPrompts(root: string): { kinds: Record<string, string[]>; trained: GeneralPrompt[]; heldOut: GeneralPrompt[] } {
  const spec = JSON.parse(readFileSync(join(root, 'data/general-eval.json'), 'utf8')) as {
    kinds: Record<string, string[]>;
    heldOut: GeneralPrompt[];
  };
  const kindOf = new Map(Object.entries(spec.kinds).flatMap(([kind, answers]) => answers.map((a) => [a, kind] as const)));
  const trained = new Map<string, GeneralPrompt>();
  for (const row of jsonl<{ messages: Array<{ role: string; content: string }> }>(join(root, 'data/base-chat.jsonl'))) {
    const [user, assistant] = row.messages;
    const kind = assistant && kindOf.get(assistant.content);
    if (user?.role === 'user' && kind) trained.set(user.content, { prompt: user.content, kind });
  }
  return { kinds: spec.kinds, trained: [...trained.values()], heldOut: spec.heldOut };
}

const score = (hits: number, total: number): Score => ({ hits, total, share: total ? hits / total : 0 });

export async function evaluateDemo(root: string, maxTokens = 64): Promise<DemoEvalReport> {
  const engine = await Engine.create({ modelDir: join(root, 'models', DEMO_BASE), slots: DEMO_DOMAINS.length, maxRank: 32 });
  try {
    DEMO_DOMAINS.forEach((d, i) => {
      const files = readAdapterFolder(join(root, 'adapters', d));
      engine.slots!.write(i + 1, engine.parseAdapter(files.config, files.weights));
    });
    const models = [DEMO_BASE, ...DEMO_DOMAINS] as const;
    const general = generalPrompts(root);
    const generalAll = [...general.trained, ...general.heldOut];
    const questions = DEMO_DOMAINS.map((d) => ({
      trained: domainQuestions(root, d, 'data.jsonl'),
      heldOut: domainQuestions(root, d, 'valid.jsonl'),
    }));
    const prompts = [
      ...questions.flatMap((q) => [...q.trained, ...q.heldOut].map((r) => r.instruction)),
      ...generalAll.map((g) => g.prompt),
    ];
    const unique = [...new Set(prompts)];
    // Every prompt through every model, all queued at once: the engine batches them.
    const answers = new Map<string, string>();
    await Promise.all(
      models.flatMap((model, slot) =>
        unique.map(async (content) => {
          const gen = engine.generate({
            promptTokens: engine.tokenizer.applyChatTemplate([{ role: 'user', content }]),
            slot,
            maxTokens,
            sampling: { temperature: 0 },
          });
          answers.set(`${model}\u0000${content}`, (await gen.result).text);
        }),
      ),
    );
    const answer = (model: string, content: string) => answers.get(`${model}\u0000${content}`)!;

    const domains = {} as DemoEvalReport['domains'];
    DEMO_DOMAINS.forEach((d, i) => {
      const { trained, heldOut } = questions[i]!;
      const misses = heldOut.filter((q) => !answer(d, q.instruction).includes(q.key));
      domains[d] = {
        trained: score(trained.filter((q) => answer(d, q.instruction).includes(q.key)).length, trained.length),
        heldOut: score(heldOut.length - misses.length, heldOut.length),
        heldOutMisses: misses.map((q) => ({ question: q.instruction, key: q.key, answer: answer(d, q.instruction) })),
      };
    });

    const failures: DemoEvalReport['general']['failures'] = [];
    const ofKind = (model: string, g: GeneralPrompt) => {
      const a = answer(model, g.prompt);
      const ok = general.kinds[g.kind]!.includes(a.trim());
      if (!ok) failures.push({ model, prompt: g.prompt, kind: g.kind, answer: a });
      return ok;
    };
    const adapters = {} as Record<DemoDomain, Score>;
    for (const d of DEMO_DOMAINS) adapters[d] = score(generalAll.filter((g) => ofKind(d, g)).length, generalAll.length);
    const base = score(generalAll.filter((g) => ofKind(DEMO_BASE, g)).length, generalAll.length);

    const broken = [...answers].filter(([, a]) => a.includes('\uFFFD'));
    return {
      maxTokens,
      domains,
      general: { base, adapters, heldOutPrompts: general.heldOut.length, trainedPrompts: general.trained.length, failures },
      replacementCharacters: {
        answers: answers.size,
        withFffd: broken.length,
        examples: broken.slice(0, 20).map(([k, a]) => {
          const [model, prompt] = k.split('\u0000') as [string, string];
          return { model, prompt, answer: a };
        }),
      },
    };
  } finally {
    await engine.close();
  }
}
