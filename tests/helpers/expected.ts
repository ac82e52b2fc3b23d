import { Engine } from '../../src/engine/index.js';
import { readAdapterFolder } from '../../src/lora/index.js';
import type { ChatMessage } from '../../src/tokenizer/index.js';

/**
 * Greedy answers computed straight on an engine (no HTTP, no cache): what the server must return
 * for the same adapter files. One engine per test file, each adapter written into its own slot.
 */
export class Expected {
  private constructor(private readonly engine: Engine) {}
  private readonly slotOf = new Map<string, number>();

  static async create(modelDir: string, slots = 8): Promise<Expected> {
    return new Expected(await Engine.create({ modelDir, slots, maxRank: 16 }));
  }

  async answer(adapterDir: string | null, messages: ChatMessage[], maxTokens: number): Promise<string> {
    let slot = adapterDir ? (this.slotOf.get(adapterDir) ?? 0) : 0;
    if (adapterDir && slot === 0) {
      slot = this.slotOf.size + 1;
      this.slotOf.set(adapterDir, slot);
      const { config, weights } = readAdapterFolder(adapterDir);
      this.engine.slots!.write(slot, this.engine.parseAdapter(config, weights));
    }
    const gen = this.engine.generate({
      promptTokens: this.engine.tokenizer.applyChatTemplate(messages),
      slot,
      maxTokens,
      sampling: { temperature: 0 },
    });
    return (await gen.result).text;
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}
