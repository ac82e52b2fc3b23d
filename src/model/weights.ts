import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MissingWeightError, ModelConfigError, SafetensorsError } from '../errors.js';
import { SafetensorsFile, type Dtype } from './safetensors.js';

/** Where one weight lives: a byte range of a safetensors file, referenced in place by the graph. */
export interface WeightRef {
  name: string;
  file: string;
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
  fileOffset: number;
  byteLength: number;
}

const FLOAT_DTYPES: ReadonlySet<Dtype> = new Set(['F32', 'F16', 'BF16']);

/**
 * The weights of a Hugging Face model folder: `model.safetensors`, or the shards listed by
 * `model.safetensors.index.json`. Headers are read and validated; tensor data is read only when
 * asked for (the engine never asks: its graph points into the files).
 */
export class WeightStore {
  private readonly files: SafetensorsFile[] = [];
  private readonly index = new Map<string, SafetensorsFile>();

  constructor(readonly dir: string) {
    const single = join(dir, 'model.safetensors');
    const indexPath = join(dir, 'model.safetensors.index.json');
    let shardNames: string[];
    if (existsSync(indexPath)) {
      let parsed: { weight_map?: Record<string, string> };
      try {
        parsed = JSON.parse(readFileSync(indexPath, 'utf8'));
      } catch (cause) {
        throw new ModelConfigError(`${indexPath} is not valid JSON`, { cause });
      }
      if (!parsed.weight_map || typeof parsed.weight_map !== 'object') throw new ModelConfigError(`${indexPath} has no weight_map`);
      shardNames = [...new Set(Object.values(parsed.weight_map))];
      if (shardNames.some((s) => s.includes('/') || s.includes('\\') || s.startsWith('.'))) {
        throw new ModelConfigError(`${indexPath} names a shard outside the model folder`);
      }
    } else if (existsSync(single)) {
      shardNames = ['model.safetensors'];
    } else {
      throw new ModelConfigError(`${dir} has neither model.safetensors nor model.safetensors.index.json`);
    }
    for (const shard of shardNames) {
      const file = SafetensorsFile.open(join(dir, shard));
      this.files.push(file);
      for (const name of file.tensors.keys()) {
        if (this.index.has(name)) throw new SafetensorsError(`tensor "${name}" appears in more than one shard`);
        this.index.set(name, file);
      }
    }
  }

  has(name: string): boolean {
    return this.index.has(name);
  }

  names(): string[] {
    return [...this.index.keys()];
  }

  ref(name: string, expectedShape?: number[]): WeightRef {
    const file = this.index.get(name);
    if (!file) throw new MissingWeightError(`${this.dir}: weight "${name}" is missing`);
    const info = file.info(name);
    if (!FLOAT_DTYPES.has(info.dtype)) throw new ModelConfigError(`weight "${name}" has dtype ${info.dtype}; F32, F16 or BF16 expected`);
    if (expectedShape && (expectedShape.length !== info.shape.length || expectedShape.some((d, i) => d !== info.shape[i]))) {
      throw new ModelConfigError(
        `weight "${name}" has shape ${JSON.stringify(info.shape)}, config implies ${JSON.stringify(expectedShape)}`,
      );
    }
    return {
      name,
      file: file.path,
      dtype: info.dtype as WeightRef['dtype'],
      shape: info.shape,
      fileOffset: info.fileOffset,
      byteLength: info.byteLength,
    };
  }

  readF32(name: string): Float32Array {
    return this.fileOf(name).readF32(name);
  }

  /** Rows of a 2-D weight as float32 (embedding lookups). */
  readRowsF32(name: string, rows: ArrayLike<number>): Float32Array {
    return this.fileOf(name).readRowsF32(name, rows);
  }

  private fileOf(name: string): SafetensorsFile {
    const file = this.index.get(name);
    if (!file) throw new MissingWeightError(`${this.dir}: weight "${name}" is missing`);
    return file;
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}
