/**
 * The one error catalogue. Every error a caller can cause has a stable `code`, an HTTP `status`
 * and an OpenAI-style `type`; causes are chained with `{ cause }`. The server's single error
 * handler turns these into `{"error": {message, type, code, param}}`; anything else becomes a
 * generic 500 whose body never carries internals.
 */
export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'conflict_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable';

export interface LoraServeErrorOptions {
  cause?: unknown;
  param?: string | null;
  headers?: Record<string, string>;
}

export abstract class LoraServeError extends Error {
  abstract readonly code: string;
  abstract readonly status: number;
  abstract readonly type: ErrorType;
  readonly param: string | null;
  readonly headers: Record<string, string>;
  constructor(message: string, options: LoraServeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.param = options.param ?? null;
    this.headers = options.headers ?? {};
  }

  /** The same error pointing at another field (a server renames the engine's fields to its request's). */
  withParam(param: string): LoraServeError {
    const Same = this.constructor as new (message: string, options: LoraServeErrorOptions) => LoraServeError;
    return new Same(this.message, { param, headers: this.headers, cause: this.cause });
  }
}

function define(code: string, status: number, type: ErrorType) {
  return class extends LoraServeError {
    readonly code = code;
    readonly status = status;
    readonly type = type;
  };
}

// Safetensors files (may come from untrusted uploads).
export class SafetensorsError extends define('invalid_safetensors', 400, 'invalid_request_error') {}

// Model folders.
export class ModelConfigError extends define('invalid_model_config', 422, 'invalid_request_error') {}
export class UnsupportedArchitectureError extends define('unsupported_architecture', 422, 'invalid_request_error') {}
export class MissingWeightError extends define('missing_weight', 422, 'invalid_request_error') {}

// PEFT adapters.
export class AdapterConfigError extends define('invalid_adapter_config', 422, 'invalid_request_error') {}
export class AdapterUnsupportedFeatureError extends define('unsupported_adapter_feature', 422, 'invalid_request_error') {}
export class AdapterBaseMismatchError extends define('adapter_base_mismatch', 422, 'invalid_request_error') {}
export class AdapterRankTooLargeError extends define('adapter_rank_too_large', 422, 'invalid_request_error') {}
export class AdapterWeightsError extends define('invalid_adapter_weights', 422, 'invalid_request_error') {}
export class AdapterNotFoundError extends define('adapter_not_found', 404, 'not_found_error') {}
export class InvalidAdapterNameError extends define('invalid_adapter_name', 400, 'invalid_request_error') {}
export class AdapterLoadFailedError extends define('adapter_load_failed', 422, 'invalid_request_error') {}
export class AdapterInUseError extends define('adapter_in_use', 409, 'conflict_error') {}
export class AdapterNameTakenError extends define('adapter_name_taken', 409, 'conflict_error') {}
export class InvalidAdapterMixError extends define('invalid_adapter_mix', 400, 'invalid_request_error') {}
export class AdaptersDisabledError extends define('adapters_disabled', 400, 'invalid_request_error') {}
/** A stored adapter whose files changed on disk after upload (truncated, bit-flipped, deleted). */
export class AdapterCorruptedError extends define('adapter_corrupted', 500, 'server_error') {}
export class InvalidUploadError extends define('invalid_upload', 400, 'invalid_request_error') {}
export class PathOutsideRootError extends define('path_outside_root', 403, 'permission_error') {}

// Requests.
export class InvalidRequestError extends define('invalid_request', 400, 'invalid_request_error') {}
export class EmptyPromptError extends define('empty_prompt', 400, 'invalid_request_error') {}
export class PromptTooLongError extends define('prompt_too_long', 400, 'invalid_request_error') {}
export class ModelNotFoundError extends define('model_not_found', 404, 'not_found_error') {}
export class NotFoundError extends define('not_found', 404, 'not_found_error') {}
export class PayloadTooLargeError extends define('payload_too_large', 413, 'invalid_request_error') {}
export class UnauthorizedError extends define('invalid_api_key', 401, 'authentication_error') {}
export class ForbiddenError extends define('forbidden', 403, 'permission_error') {}
export class QueueFullError extends define('queue_full', 429, 'rate_limit_error') {}
/** A tenant's limit from the keys file (max_concurrent, max_queued, requests or tokens per minute). */
export class RateLimitedError extends define('rate_limit_exceeded', 429, 'rate_limit_error') {}
export class ShuttingDownError extends define('shutting_down', 503, 'service_unavailable') {}
export class RequestTimeoutError extends define('request_timeout', 408, 'invalid_request_error') {}
export class RequestCancelledError extends define('request_cancelled', 499, 'invalid_request_error') {}

// Files and fine-tuning jobs (OpenAI's /v1/files and /v1/fine_tuning/jobs).
/** A JSONL upload with a line that is not a training example: the message names the first such line. */
export class InvalidTrainingFileError extends define('invalid_training_file', 400, 'invalid_request_error') {}
export class FileNotFoundError extends define('file_not_found', 404, 'not_found_error') {}
export class FineTuningJobNotFoundError extends define('fine_tuning_job_not_found', 404, 'not_found_error') {}
/** Cancel of a job that has already ended. */
export class JobNotCancellableError extends define('job_not_cancellable', 409, 'conflict_error') {}

// Server and CLI configuration (flags, environment, the keys file): the CLI prints one line and exits 2.
export class ConfigError extends define('invalid_config', 500, 'server_error') {}

// Engine.
export class ProviderUnavailableError extends define('provider_unavailable', 500, 'server_error') {}
export class EngineError extends define('engine_error', 500, 'server_error') {}
/** Readiness while the engine's forward passes fail (the process is up; its provider is not serving). */
export class EngineUnhealthyError extends define('engine_unhealthy', 503, 'service_unavailable') {}

// Tokenizer and datasets.
export class TokenizerError extends define('tokenizer_error', 422, 'invalid_request_error') {}
export class DatasetError extends define('invalid_dataset', 422, 'invalid_request_error') {}
export class MaxTokensTooLargeError extends define('max_tokens_too_large', 400, 'invalid_request_error') {}
export class UnsupportedParameterError extends define('unsupported_parameter', 400, 'invalid_request_error') {}
/** A response_format JSON schema that is malformed or uses features structured output cannot enforce. */
export class UnsupportedSchemaError extends define('unsupported_json_schema', 400, 'invalid_request_error') {}
