/**
 * A training file is checked line by line before it is stored, with the trainer's own parser
 * (OpenAI's chat format `{"messages": [...]}`, the seed tutorial's instruction/input/output, and
 * plain `{"text": ...}`), so a job never starts on data its worker would refuse. The first bad line
 * is named in the 400.
 */
import { DatasetError, InvalidTrainingFileError, PayloadTooLargeError } from '../errors.js';
import { parseLine } from '../train/index.js';

export interface FileLimits {
  /** Largest file accepted, in bytes. */
  bytes: number;
  /** Most examples (non-empty lines) in one file. */
  lines: number;
}

/** The number of examples in a valid training file; throws on the first line that is not one. */
export function checkTrainingFile(data: Uint8Array, limits: FileLimits): number {
  if (data.byteLength > limits.bytes)
    throw new PayloadTooLargeError(`the file is ${data.byteLength} bytes; this server accepts training files up to ${limits.bytes}`, {
      param: 'file',
    });
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch (cause) {
    throw new InvalidTrainingFileError('the file is not UTF-8 text', { cause, param: 'file' });
  }
  let examples = 0;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.trim()) continue;
    if (++examples > limits.lines)
      throw new InvalidTrainingFileError(`line ${i + 1}: the file holds more than ${limits.lines} examples, this server's limit`, {
        param: 'file',
      });
    try {
      parseLine(lines[i]!, `line ${i + 1}`);
    } catch (err) {
      if (!(err instanceof DatasetError)) throw err;
      throw new InvalidTrainingFileError(err.message, { param: 'file' });
    }
  }
  if (examples === 0) throw new InvalidTrainingFileError('the file holds no examples (one JSON object per line)', { param: 'file' });
  return examples;
}
