/**
 * The only module that touches ONNX Runtime. Everything else speaks `HostTensor`.
 */
import * as ort from 'onnxruntime-node';
import { EngineError, ProviderUnavailableError } from '../errors.js';
import type { BuiltGraph } from '../model/index.js';

export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';

export type HostTensor = { type: 'float32'; data: Float32Array; dims: number[] } | { type: 'int64'; data: BigInt64Array; dims: number[] };

export interface SessionOptions {
  provider: ExecutionProvider;
  /** Intra-op threads; 0 lets ORT use every core. */
  threads?: number;
}

export function availableProviders(): string[] {
  return ort.listSupportedBackends().map((b) => b.name);
}

export class OnnxSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly provider: ExecutionProvider,
  ) {}

  /**
   * Creates a session over a built graph held in memory. Its initializers are external data whose
   * locations ORT resolves in the model folder, so each weight is read straight out of the model's
   * safetensors file at its byte offset: no converted copy is written or held.
   */
  static async create(graph: BuiltGraph, options: SessionOptions): Promise<OnnxSession> {
    if (!availableProviders().includes(options.provider)) {
      throw new ProviderUnavailableError(
        `execution provider "${options.provider}" is not in this onnxruntime-node build (has: ${availableProviders().join(', ')})`,
      );
    }
    try {
      const session = await ort.InferenceSession.create(graph.bytes, {
        executionProviders: [options.provider],
        graphOptimizationLevel: 'all',
        intraOpNumThreads: options.threads ?? 0,
        interOpNumThreads: 1,
        extra: { session: { model_external_initializers_file_folder_path: graph.externalDir } },
      });
      return new OnnxSession(session, options.provider);
    } catch (cause) {
      if (options.provider !== 'cpu') {
        const hint = options.provider === 'cuda' ? '; on a CUDA 12 host install with ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci' : '';
        throw new ProviderUnavailableError(`execution provider "${options.provider}" could not start: ${(cause as Error).message}${hint}`, {
          cause,
        });
      }
      throw new EngineError(`ONNX Runtime could not load the model graph: ${(cause as Error).message}`, { cause });
    }
  }

  async run(feeds: Record<string, HostTensor>): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    const results = await this.session.run(ortFeeds);
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(results)) {
      if (t.type !== 'float32') throw new EngineError(`unexpected output type ${t.type} for ${name}`);
      out[name] = { type: 'float32', data: t.data as Float32Array, dims: [...t.dims] };
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
