import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { LoraServeError } from '../errors.js';
import { validationMessage, type SchemaError } from './validation-message.js';

interface ErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

const body = (message: string, type: string, code: string, param: string | null = null): ErrorBody => ({
  error: { message, type, code, param },
});

/** Fastify's own client errors, mapped to stable codes. */
const FASTIFY_CODES: Record<string, { status: number; code: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'payload_too_large' },
  FST_REQ_FILE_TOO_LARGE: { status: 413, code: 'payload_too_large' },
  FST_PARTS_LIMIT: { status: 413, code: 'payload_too_large' },
  FST_FILES_LIMIT: { status: 413, code: 'payload_too_large' },
  FST_FIELDS_LIMIT: { status: 413, code: 'payload_too_large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'invalid_json' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'invalid_json' },
  FST_INVALID_MULTIPART_CONTENT_TYPE: { status: 400, code: 'invalid_upload' },
};

/**
 * The one error handler. Catalogue errors keep their status and code; validation and body errors
 * become 4xx with stable codes; anything else is a 500 whose body names only the request id.
 */
export function errorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (err instanceof LoraServeError) {
    if (err.status >= 500) request.log.error({ err }, 'request failed');
    void reply
      .headers(err.headers)
      .code(err.status)
      .send(body(err.message, err.type, err.code, err.param));
    return;
  }
  if (err.validation) {
    const { message, param } = validationMessage(err.validation as SchemaError[], err.validationContext);
    void reply.code(400).send(body(message, 'invalid_request_error', 'invalid_request', param));
    return;
  }
  const known = err.code ? FASTIFY_CODES[err.code] : undefined;
  if (known) {
    void reply.code(known.status).send(body(err.message, 'invalid_request_error', known.code));
    return;
  }
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
    void reply.code(err.statusCode).send(body(err.message, 'invalid_request_error', 'invalid_request'));
    return;
  }
  request.log.error({ err }, 'unhandled error');
  void reply.code(500).send(body(`internal error (request ${request.id})`, 'server_error', 'internal_error'));
}
