import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { ApiError } from '../errors.js';

/** Every error leaves as `{ error: { code, message } }` with a status that says whose fault it is. */
export default fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler((err: FastifyError | ApiError | Error, request, reply) => {
      if (err instanceof ApiError) {
        return reply.status(err.statusCode).send({
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
          code: status >= 500 ? 'internal_error' : (fe.code ?? 'bad_request').toLowerCase(),
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
