/** OpenAI's files and fine_tuning.jobs objects, with loraserve's LoRA extension. */
import { Type, type TSchema } from '@sinclair/typebox';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Auto = <T extends TSchema>(t: T) => Type.Union([Type.Literal('auto'), t]);

export const FileObject = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('file'),
    bytes: Type.Integer(),
    created_at: Type.Integer(),
    filename: Type.String(),
    purpose: Type.Union([Type.Literal('fine-tune'), Type.Literal('fine-tune-results')]),
    status: Type.Literal('processed'),
    status_details: Type.Null(),
  },
  { $id: 'FileObject' },
);

export const FileList = Type.Object(
  { object: Type.Literal('list'), data: Type.Array(Type.Ref(FileObject)), has_more: Type.Boolean() },
  { $id: 'FileList' },
);

export const FileDeleted = Type.Object(
  { id: Type.String(), object: Type.Literal('file'), deleted: Type.Literal(true) },
  { $id: 'FileDeleted' },
);

export const FileUpload = Type.Object({
  purpose: Type.Literal('fine-tune', { description: 'Only training data is stored here.' }),
  file: Type.String({
    format: 'binary',
    description:
      'JSONL, one example per line: OpenAI chat ({"messages": [...]}), instruction/input/output (the seed tutorial) or {"text": ...}. ' +
      'Checked line by line; a 400 names the first bad line.',
  }),
});

export const FileParams = Type.Object({ file_id: Type.String() });
/** A query's limit arrives as text (the server does not coerce types). */
const Limit = (max: number) => Type.String({ pattern: '^[1-9][0-9]*$', description: `1 to ${max} (default 20)` });

export const FileListQuery = Type.Object(
  { purpose: Type.Optional(Type.String()), after: Type.Optional(Type.String()), limit: Type.Optional(Limit(10000)) },
  { additionalProperties: false },
);

export const Hyperparameters = Type.Object(
  {
    n_epochs: Type.Optional(Auto(Type.Integer({ minimum: 1, maximum: 100 }))),
    batch_size: Type.Optional(Auto(Type.Integer({ minimum: 1, maximum: 64 }))),
    learning_rate_multiplier: Type.Optional(
      Auto(Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'Times the seed tutorial learning rate (2e-4); "auto" is 10.' })),
    ),
  },
  { additionalProperties: false, $id: 'Hyperparameters' },
);

export const LoraSettings = Type.Object(
  {
    r: Type.Optional(Type.Integer({ minimum: 1, description: "LoRA rank (8); at most the server's --max-rank." })),
    lora_alpha: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1024, description: 'LoRA alpha (16).' })),
    target_modules: Type.Optional(
      Type.Union([Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.]+$' }), { minItems: 1, maxItems: 64 }), Type.Literal('all-linear')], {
        description: 'Modules adapted (q_proj, v_proj).',
      }),
    ),
    lora_dropout: Type.Optional(
      Type.Number({ minimum: 0, exclusiveMaximum: 1, description: 'Dropout on the LoRA path while training (0.05).' }),
    ),
  },
  { additionalProperties: false, $id: 'LoraSettings', description: "loraserve extension; defaults are the seed tutorial's." },
);

export const CreateJobRequest = Type.Object(
  {
    model: Type.String({ description: 'The served base model id.' }),
    training_file: Type.String(),
    validation_file: Type.Optional(Nullable(Type.String())),
    suffix: Type.Optional(Nullable(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,40}$', description: 'Part of the fine-tuned model name.' }))),
    seed: Type.Optional(Nullable(Type.Integer({ minimum: 0, maximum: 2147483647 }))),
    method: Type.Optional(
      Type.Object(
        {
          type: Type.Literal('supervised'),
          supervised: Type.Optional(
            Type.Object({ hyperparameters: Type.Optional(Type.Ref(Hyperparameters)) }, { additionalProperties: false }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    lora: Type.Optional(Type.Ref(LoraSettings)),
  },
  { additionalProperties: false, $id: 'CreateFineTuningJobRequest' },
);

const ResolvedHyperparameters = Type.Object({
  n_epochs: Auto(Type.Integer()),
  batch_size: Auto(Type.Integer()),
  learning_rate_multiplier: Auto(Type.Number()),
});

export const FineTuningJob = Type.Object(
  {
    object: Type.Literal('fine_tuning.job'),
    id: Type.String(),
    model: Type.String(),
    created_at: Type.Integer(),
    finished_at: Nullable(Type.Integer()),
    fine_tuned_model: Nullable(Type.String({ description: 'ft:<base>:<suffix>:<job id>, servable as a chat model once succeeded.' })),
    organization_id: Type.String({ description: 'The tenant.' }),
    result_files: Type.Array(Type.String(), {
      description: 'step_metrics.csv, loss-plot.svg and train-log.json (purpose fine-tune-results).',
    }),
    status: Type.Union(['validating_files', 'queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => Type.Literal(s))),
    training_file: Type.String(),
    validation_file: Nullable(Type.String()),
    hyperparameters: ResolvedHyperparameters,
    trained_tokens: Type.Null(),
    error: Nullable(Type.Object({ code: Type.String(), message: Type.String(), param: Nullable(Type.String()) })),
    seed: Type.Integer(),
    estimated_finish: Type.Null(),
    integrations: Type.Null(),
    metadata: Type.Null(),
    user_provided_suffix: Nullable(Type.String()),
    method: Type.Object({ type: Type.Literal('supervised'), supervised: Type.Object({ hyperparameters: ResolvedHyperparameters }) }),
    lora: Type.Object({
      r: Type.Integer(),
      lora_alpha: Type.Number(),
      target_modules: Type.Union([Type.Array(Type.String()), Type.Literal('all-linear')]),
      lora_dropout: Type.Number(),
    }),
  },
  { $id: 'FineTuningJob' },
);

const listOf = (item: TSchema, $id: string) =>
  Type.Object({ object: Type.Literal('list'), data: Type.Array(item), has_more: Type.Boolean() }, { $id });

export const FineTuningJobList = listOf(Type.Ref(FineTuningJob), 'FineTuningJobList');

export const FineTuningJobEvent = Type.Object(
  {
    object: Type.Literal('fine_tuning.job.event'),
    id: Type.String(),
    created_at: Type.Integer(),
    level: Type.Union([Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')]),
    message: Type.String(),
    data: Type.Record(Type.String(), Type.Unknown()),
    type: Type.Union([Type.Literal('message'), Type.Literal('metrics')]),
  },
  { $id: 'FineTuningJobEvent' },
);
export const FineTuningJobEventList = listOf(Type.Ref(FineTuningJobEvent), 'FineTuningJobEventList');

export const FineTuningJobCheckpoint = Type.Object(
  {
    object: Type.Literal('fine_tuning.job.checkpoint'),
    id: Type.String(),
    created_at: Type.Integer(),
    fine_tuned_model_checkpoint: Type.String(),
    fine_tuning_job_id: Type.String(),
    metrics: Type.Object({ step: Type.Integer(), train_loss: Nullable(Type.Number()), valid_loss: Nullable(Type.Number()) }),
    step_number: Type.Integer(),
  },
  { $id: 'FineTuningJobCheckpoint' },
);
export const FineTuningJobCheckpointList = listOf(Type.Ref(FineTuningJobCheckpoint), 'FineTuningJobCheckpointList');

export const JobParams = Type.Object({ fine_tuning_job_id: Type.String() });
export const PageQuery = Type.Object(
  { after: Type.Optional(Type.String()), limit: Type.Optional(Limit(100)) },
  { additionalProperties: false },
);
