import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { presentedKey } from './auth.js';
import { rateLimited } from './rate-limits.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** Paths under the API prefix that stay open: the worker socket has its own tokens. */
const OPEN_PATHS = new Set(['/api/v1/workers/socket']);

/**
 * The paths a request is about: the matched route's pattern (what the router serves; the
 * dashboard's catch-all for unknown paths), and the request's own path with the origin of an
 * absolute-form target dropped, percent-escapes decoded and repeated slashes collapsed. Deciding
 * on the raw URL alone would let `/%61pi/v1/events` or `http://host/api/v1/events` through while
 * the router serves `/api/v1/events`.
 */
function requestPaths(request: FastifyRequest): string[] {
  const route = request.routeOptions.url;
  return route ? [route, normalisedPath(request.url)] : [normalisedPath(request.url)];
}

function normalisedPath(url: string): string {
  let path = url.split('?', 1)[0]!.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '');
  try {
    path = decodeURIComponent(path);
  } catch {
    // A malformed escape is no route either; judge the text as it is.
  }
  return path.replace(/\/{2,}/g, '/');
}

/**
 * The organiser's optional view key (config `viewKey`): when set, everything under `/api/v1`
 * (reads included) needs `Authorization: Bearer <view key or admin key>`, `X-API-Key`, or
 * `?key=` (the view key only, for what a browser fetches without headers: the live stream,
 * images, downloads). Access is decided on the route the request is served by.
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
      const route = request.routeOptions.url;
      if (route && OPEN_PATHS.has(route)) return;
      const underApi = (p: string) => p === '/api/v1' || p.startsWith('/api/v1/');
      if (!requestPaths(request).some(underApi)) return;
      const query = request.query as Record<string, unknown> | undefined;
      let key = presentedKey(request);
      let fromQuery = false;
      if (query && typeof query.key === 'string') {
        if (key === undefined) {
          key = query.key;
          fromQuery = true;
        }
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
      if (await app.authFailures.locked(request)) throw rateLimited('failed authentications');
      // A URL ends up in logs, histories and referrers: the admin key is never taken from one.
      if (!isViewKey(key) && (fromQuery || !app.coordinator.adminKey.verify(key))) {
        await app.authFailures.failed(request);
        return reply
          .status(403)
          .send({ error: { code: 'forbidden', message: 'the view key is not valid' } });
      }
    });
  },
  { name: 'view-key', dependencies: ['auth'] },
);
