/**
 * The only module that touches ONNX Runtime. Everything else speaks `HostTensor`.
 */
import * as ort from 'onnxruntime-node';
import { EngineError, ProviderUnavailableError } from '../errors.js';
import type { BuiltGraph } from '../model/index.js';

export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'webgpu'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

export type HostTensor =
  | { type: 'float32'; data: Float32Array; dims: number[] }
  | { type: 'int64'; data: BigInt64Array; dims: number[] }
  | { type: 'int32'; data: Int32Array; dims: number[] };

/**
 * An output kept where the provider computed it (GPU memory on WebGPU; a host buffer on the CPU
 * provider), to be fed to a later run without a round trip through JavaScript. Its owner disposes it.
 */
export class DeviceTensor {
  constructor(private readonly value: ort.Tensor) {}

  get dims(): readonly number[] {
    return this.value.dims;
  }

  /** @internal the ORT tensor, for feeding (only this module reads it). */
  get ortValue(): ort.Tensor {
    return this.value;
  }

  dispose(): void {
    this.value.dispose();
  }
}

export type Feed = HostTensor | DeviceTensor;

export interface SessionOptions {
  provider: ExecutionProvider;
  /** Intra-op threads; 0 lets ORT use every core. */
  threads?: number;
  /** Outputs returned as DeviceTensors (kept on the device); the rest come back to the host. */
  deviceOutputs?: readonly string[];
  /** ORT's verbose log on stderr, which names the provider each node is placed on. */
  verboseLog?: boolean;
  /** ORT's profile of every run (each node's time), written to `<prefix>_<time>.json` when the session is released. */
  profilePrefix?: string;
}

export interface RunResult {
  /** Outputs brought back to the host (always float32). */
  host: Record<string, Extract<HostTensor, { type: 'float32' }>>;
  device: Record<string, DeviceTensor>;
}

/**
 * Bytes that crossed between JavaScript and ORT: host tensors fed, host outputs returned. On a GPU
 * provider these are the host↔device transfers (DeviceTensors never cross); the KV cache must not
 * be among them.
 */
export interface TransferCounter {
  runs: number;
  toDevice: number;
  fromDevice: number;
}

export function availableProviders(): string[] {
  return ort.listSupportedBackends().map((b) => b.name);
}

export class OnnxSession {
  readonly transfers: TransferCounter = { runs: 0, toDevice: 0, fromDevice: 0 };

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly provider: ExecutionProvider,
    private readonly deviceOutputs: ReadonlySet<string>,
  ) {}

  /**
   * Creates a session over a built graph held in memory. Its initializers are external data whose
   * locations ORT resolves in the model folder, so each weight is read straight out of the model's
   * safetensors file at its byte offset: no converted copy is written or held.
   */
  static async create(graph: Pick<BuiltGraph, 'bytes'> & { externalDir?: string }, options: SessionOptions): Promise<OnnxSession> {
    if (!availableProviders().includes(options.provider)) {
      throw new ProviderUnavailableError(
        `execution provider "${options.provider}" is not in this onnxruntime-node build (has: ${availableProviders().join(', ')})`,
      );
    }
    const deviceOutputs = new Set(options.deviceOutputs ?? []);
    // Only a GPU provider can keep an output on the device; elsewhere it is a host buffer ORT owns.
    const location = options.provider === 'webgpu' ? 'gpu-buffer' : options.provider === 'cuda' ? 'gpu-buffer' : 'cpu';
    try {
      const session = await ort.InferenceSession.create(graph.bytes, {
        executionProviders: [options.provider],
        graphOptimizationLevel: 'all',
        intraOpNumThreads: options.threads ?? 0,
        interOpNumThreads: 1,
        ...(options.verboseLog ? { logSeverityLevel: 0, logVerbosityLevel: 1 } : {}),
        ...(options.profilePrefix ? { enableProfiling: true, profileFilePrefix: options.profilePrefix } : {}),
        ...(deviceOutputs.size && location !== 'cpu'
          ? { preferredOutputLocation: Object.fromEntries([...deviceOutputs].map((name) => [name, location])) }
          : {}),
        ...(graph.externalDir ? { extra: { session: { model_external_initializers_file_folder_path: graph.externalDir } } } : {}),
      } as ort.InferenceSession.SessionOptions);
      return new OnnxSession(session, options.provider, deviceOutputs);
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

  async run(feeds: Record<string, Feed>): Promise<RunResult> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      if (t instanceof DeviceTensor) {
        ortFeeds[name] = t.ortValue;
      } else {
        ortFeeds[name] = new ort.Tensor(t.type, t.data, t.dims);
        this.transfers.toDevice += t.data.byteLength;
      }
    }
    const results = await this.session.run(ortFeeds);
    this.transfers.runs++;
    const out: RunResult = { host: {}, device: {} };
    for (const [name, t] of Object.entries(results)) {
      if (this.deviceOutputs.has(name)) {
        out.device[name] = new DeviceTensor(t);
        continue;
      }
      if (t.type !== 'float32') throw new EngineError(`unexpected output type ${t.type} for ${name}`);
      const data = t.data as Float32Array;
      this.transfers.fromDevice += data.byteLength;
      out.host[name] = { type: 'float32', data, dims: [...t.dims] };
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
