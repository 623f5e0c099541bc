import { Health, Readiness } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { sql } from 'drizzle-orm';
import { VERSION } from '../../version.js';

const started = Date.now();

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['health'],
        summary: 'Liveness: the process serves requests',
        response: { 200: Health },
      },
    },
    async () => ({
      status: 'ok' as const,
      version: VERSION,
      uptimeSeconds: (Date.now() - started) / 1000,
    }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: the database and the object store answer',
        response: { 200: Readiness, 503: Readiness },
      },
    },
    async (_request, reply) => {
      const { db, store } = app.coordinator;
      const checks: Record<string, { ok: boolean; message?: string }> = {};
      try {
        db.get(sql`select 1`);
        checks.database = { ok: true };
      } catch (err) {
        checks.database = { ok: false, message: (err as Error).message };
      }
      try {
        await store.head('readyz-probe');
        checks.objectStore = { ok: true, message: store.description };
      } catch (err) {
        checks.objectStore = { ok: false, message: (err as Error).message };
      }
      const ok = Object.values(checks).every((c) => c.ok);
      return reply.status(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not_ready', checks });
    },
  );
};

export default routes;
