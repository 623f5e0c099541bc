import { MAX_FRAME_BYTES } from '@archipelago/protocol';
import websocket from '@fastify/websocket';
import { desc, eq } from 'drizzle-orm';
import type { FastifyPluginAsync } from 'fastify';
import { type LeaseRow, leases, workers } from '../../db/schema/index.js';
import { RATE_WINDOW_MS } from '../../plugins/rate-limits.js';

/**
 * The worker WebSocket (`GET /api/v1/workers/socket`) and the list of workers. Frames up to 16x
 * the protocol limit reach the protocol layer, which answers an oversized one with an error frame
 * and a close; anything larger is cut off by ws itself (close 1009).
 */
const routes: FastifyPluginAsync = async (app) => {
  const { hub, db } = app.coordinator;
  await app.register(websocket, { options: { maxPayload: 16 * MAX_FRAME_BYTES } });
  // Close worker sockets before the HTTP server waits for its connections to end; a peer that
  // does not finish the closing handshake within a second is cut off.
  app.addHook('preClose', async () => {
    hub.stop();
    for (const client of app.websocketServer.clients) {
      client.close(1001, 'coordinator shutting down');
      setTimeout(() => client.terminate(), 1000).unref();
    }
  });
  app.get(
    '/socket',
    {
      websocket: true,
      schema: { hide: true },
      // Connection attempts per client; failed hellos count with the other failed authentications.
      config: {
        rateLimit: { max: app.coordinator.config.socketRateLimit, timeWindow: RATE_WINDOW_MS },
      },
    },
    (socket, request) => {
      hub.accept(socket, request.ip, {
        locked: () => app.authFailures.locked(request),
        failed: () => app.authFailures.failed(request),
      });
    },
  );

  app.get(
    '/',
    {
      schema: {
        tags: ['workers'],
        summary:
          'Workers: connected or not, hardware, backend, current lease (paused since when, if paused)',
      },
    },
    async () => {
      const leaseOf = (l: LeaseRow) => ({
        id: l.id,
        expertId: l.expertId,
        pausedSince: l.pausedAt?.toISOString() ?? null,
      });
      const active = new Map(
        db
          .select()
          .from(leases)
          .where(eq(leases.status, 'active'))
          .all()
          .map((l) => [l.workerId, l]),
      );
      return {
        workers: db
          .select()
          .from(workers)
          .orderBy(desc(workers.lastSeenAt))
          .all()
          .map((w) => ({
            id: w.id,
            name: w.name,
            objective: w.objective,
            backend: w.backend,
            hardware: w.hardware,
            online: w.online,
            lastSeenAt: w.lastSeenAt?.toISOString() ?? null,
            lease: active.has(w.id) ? leaseOf(active.get(w.id)!) : null,
          })),
      };
    },
  );
};

export default routes;
