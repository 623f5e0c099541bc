import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { presentedKey } from './auth.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** Paths under the API prefix that stay open: the worker socket has its own tokens. */
const OPEN_PATHS = new Set(['/api/v1/workers/socket']);

/**
 * The organiser's optional view key (config `viewKey`): when set, everything under `/api/v1`
 * (reads included) needs `Authorization: Bearer <view key or admin key>`, `X-API-Key`, or
 * `?key=` (for what a browser fetches without headers: the live stream, images, downloads).
 * Health, readiness, Prometheus metrics, the docs, the dashboard's static files and the
 * worker socket stay open. Without a view key this plugin does nothing.
 */
export default fp(
  async (app: FastifyInstance) => {
    const { viewKey } = app.coordinator.config;
    if (!viewKey) return;
    const viewHash = sha256(viewKey);
    const isViewKey = (key: string) => timingSafeEqual(sha256(key), viewHash);

    app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      const path = request.url.split('?', 1)[0]!;
      if (!(path === '/api/v1' || path.startsWith('/api/v1/')) || OPEN_PATHS.has(path)) return;
      const query = request.query as Record<string, unknown> | undefined;
      let key = presentedKey(request);
      if (query && typeof query.key === 'string') {
        key ??= query.key;
        // Not a parameter of any route: routes refuse unknown query parameters.
        delete query.key;
      }
      if (!key) {
        return reply
          .status(401)
          .header('www-authenticate', 'Bearer')
          .send({
            error: {
              code: 'view_key_required',
              message:
                'this coordinator requires a view key: send Authorization: Bearer <view key> or ?key=<view key>',
            },
          });
      }
      if (!isViewKey(key) && !app.coordinator.adminKey.verify(key)) {
        return reply
          .status(403)
          .send({ error: { code: 'forbidden', message: 'the view key is not valid' } });
      }
    });
  },
  { name: 'view-key', dependencies: ['auth'] },
);
