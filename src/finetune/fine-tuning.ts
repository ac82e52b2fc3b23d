/**
 * The fine-tuning loop behind OpenAI's `/v1/files` and `/v1/fine_tuning/jobs`: a tenant's
 * training files and jobs, kept under one folder (`files/`, `jobs/`).
 */
import { join } from 'node:path';
import { InvalidRequestError } from '../errors.js';
import { FileStore, type StoredFile } from './file-store.js';
import { JobManager, type FineTuneHost, type JobLimits } from './jobs.js';
import { checkTrainingFile } from './training-file.js';

export class FineTuning {
  private constructor(
    readonly files: FileStore,
    readonly jobs: JobManager,
    private readonly limits: JobLimits,
  ) {}

  static async open(root: string, host: FineTuneHost, limits: JobLimits): Promise<FineTuning> {
    const files = await FileStore.open(join(root, 'files'));
    return new FineTuning(files, await JobManager.open(join(root, 'jobs'), files, host, limits), limits);
  }

  /** Validates an uploaded training file line by line, then stores it for the tenant. */
  async upload(tenant: string, purpose: unknown, filename: string, data: Buffer): Promise<StoredFile> {
    if (purpose !== 'fine-tune')
      throw new InvalidRequestError(
        `purpose must be "fine-tune", not ${JSON.stringify(purpose ?? null)}: this server stores training files only`,
        {
          param: 'purpose',
        },
      );
    checkTrainingFile(data, this.limits.files);
    return this.files.put(tenant, filename, 'fine-tune', data);
  }

  close(): Promise<void> {
    return this.jobs.close();
  }
}
