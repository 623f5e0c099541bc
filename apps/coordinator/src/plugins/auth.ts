import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { rateLimited } from './rate-limits.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook for admin routes (before body validation): `Authorization: Bearer <admin key>` or `X-API-Key`. */
    requireAdmin: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
}

export function presentedKey(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice('Bearer '.length).trim();
  const apiKey = request.headers['x-api-key'];
  return typeof apiKey === 'string' ? apiKey : undefined;
}

export default fp(
  async (app: FastifyInstance) => {
    app.decorate('requireAdmin', async (request: FastifyRequest, reply: FastifyReply) => {
      const key = presentedKey(request);
      if (!key) {
        return reply
          .status(401)
          .header('www-authenticate', 'Bearer')
          .send({
            error: {
              code: 'unauthorized',
              message: 'admin API key required: send Authorization: Bearer <key>',
            },
          });
      }
      // A client that failed too often is refused before its key is looked at (no oracle).
      if (await app.authFailures.locked(request)) throw rateLimited('failed authentications');
      if (!app.coordinator.adminKey.verify(key)) {
        await app.authFailures.failed(request);
        return reply
          .status(403)
          .send({ error: { code: 'forbidden', message: 'the admin API key is not valid' } });
      }
    });
  },
  { name: 'auth', dependencies: ['rate-limits'] },
);
