import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { DomainError, type ErrorCode } from '../errors.js';

/** The HTTP status of each domain error code: whose fault it is, and what to do about it. */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  validation_error: 400,
  folder_not_found: 400,
  embeddings_not_found: 400,
  unsupported_format: 400,
  too_small: 400,
  too_many_experts: 400,
  resolution_mismatch: 400,
  invalid_patch_size: 400,
  invalid_checkpoint_interval: 400,
  invalid_objective_mix: 400,
  clustering_mismatch: 400,
  invalid_init_from: 400,
  not_found: 404,
  not_published: 404,
  no_shard: 404,
  not_scored: 404,
  score_disabled: 404,
  conflict: 409,
  run_finished: 409,
  invalid_transition: 409,
  score_pending: 409,
  score_failed: 409,
  too_costly: 413,
  busy: 429,
  client_busy: 429,
  rate_limited: 429,
  too_many_streams: 429,
  // nginx's "client closed request": nobody reads it, but logs tell it from a server error.
  cancelled: 499,
  unknown_lease: 404,
  lease_expired: 409,
  invalid_message: 400,
  out_of_order: 409,
  stale_checkpoint_step: 409,
  checkpoint_step: 400,
  checkpoint_size: 400,
  lease_held: 409,
  lease_limit: 409,
};

/**
 * Fastify's own request errors under stable names (its `FST_ERR_*` codes are an implementation
 * detail that may change between versions); any other 4xx from it is `bad_request`.
 */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'bad_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'empty_body',
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_content_length',
  FST_ERR_CTP_INVALID_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_TYPE: 'unsupported_media_type',
};

/** Every error leaves as `{ error: { code, message } }` with a status that says whose fault it is. */
export default fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler((err: FastifyError | DomainError | Error, request, reply) => {
      if (err instanceof DomainError) {
        return reply.status(HTTP_STATUS[err.code]).send({
          error: {
            code: err.code,
            message: err.message,
            ...(err.details ? { details: err.details } : {}),
          },
        });
      }
      const fe = err as FastifyError;
      if (fe.validation) {
        const where = fe.validationContext ?? 'request';
        const first = fe.validation[0];
        const field = first?.instancePath
          ? `${where}${first.instancePath.replaceAll('/', '.')}`
          : where;
        const allowed =
          first?.params && 'allowedValues' in first.params
            ? ` (allowed: ${(first.params.allowedValues as unknown[]).join(', ')})`
            : '';
        const extra =
          first?.params && 'additionalProperty' in first.params
            ? ` "${String(first.params.additionalProperty)}"`
            : '';
        return reply.status(400).send({
          error: {
            code: 'validation_error',
            message: `${field} ${first?.message ?? 'is invalid'}${extra}${allowed}`,
            details: fe.validation,
          },
        });
      }
      const status = fe.statusCode && fe.statusCode >= 400 ? fe.statusCode : 500;
      if (status >= 500) request.log.error({ err }, 'request failed');
      return reply.status(status).send({
        error: {
          code: status >= 500 ? 'internal_error' : (FASTIFY_CODES[fe.code] ?? 'bad_request'),
          message: status >= 500 ? 'internal error; see the coordinator log' : fe.message,
        },
      });
    });
    app.setNotFoundHandler((request, reply) =>
      reply.status(404).send({
        error: { code: 'not_found', message: `no route ${request.method} ${request.url}` },
      }),
    );
  },
  { name: 'errors' },
);
