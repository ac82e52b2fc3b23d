/** The messages between the job manager and its training worker (JSON over the fork's IPC channel). */
import type { TrainOptions } from '../train/index.js';

export interface WorkerJob {
  train: Pick<
    TrainOptions,
    | 'modelDir'
    | 'dataPath'
    | 'valDataPath'
    | 'outDir'
    | 'r'
    | 'alpha'
    | 'dropout'
    | 'targetModules'
    | 'epochs'
    | 'batchSize'
    | 'learningRate'
    | 'seed'
    | 'maxSeq'
    | 'threads'
  >;
  /** Where epoch checkpoints are written (inside the job's private folder). */
  checkpointsDir: string;
  /** Epochs from this one on (the last excepted: its adapter is the result) end with a checkpoint. */
  firstCheckpointEpoch: number;
}

export type ToWorker = { type: 'start'; job: WorkerJob } | { type: 'cancel' };

export type ToParent =
  | { type: 'step'; step: number; total: number; epoch: number; loss: number }
  | { type: 'epoch'; epoch: number; step: number; valLoss: number | null; dir: string | null }
  | { type: 'done'; steps: number; seconds: number; backend: string }
  | { type: 'failed'; code: string; message: string };
