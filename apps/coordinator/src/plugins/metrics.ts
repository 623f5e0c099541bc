import { sql } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { datasets, experts, jobs, runs } from '../db/schema/index.js';
import { CoordinatorMetrics } from '../metrics.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: CoordinatorMetrics;
  }
}

/**
 * Prometheus metrics at GET /metrics: process (event-loop delay included), HTTP, state counts
 * read from SQLite on scrape, and the coordinator's own work (metrics.ts).
 */
export default fp(
  async (app: FastifyInstance) => {
    const registry = new Registry();
    registry.setDefaultLabels({ service: 'archipelago-coordinator' });
    collectDefaultMetrics({ register: registry });
    const { db } = app.coordinator;
    const metrics = new CoordinatorMetrics(registry, app.coordinator);

    const requests = new Counter({
      name: 'archipelago_http_requests_total',
      help: 'HTTP requests by method, route and status code',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
    });
    const duration = new Histogram({
      name: 'archipelago_http_request_duration_seconds',
      help: 'HTTP request duration by method and route',
      labelNames: ['method', 'route'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    const countBy = (
      name: string,
      help: string,
      label: string,
      read: () => { key: string; n: number }[],
    ) =>
      new Gauge({
        name,
        help,
        labelNames: [label],
        registers: [registry],
        collect() {
          this.reset();
          for (const { key, n } of read()) this.set({ [label]: key }, n);
        },
      });
    countBy('archipelago_runs', 'Runs by status', 'status', () =>
      db
        .select({ key: runs.status, n: sql<number>`count(*)` })
        .from(runs)
        .groupBy(runs.status)
        .all(),
    );
    countBy('archipelago_experts', 'Experts by status', 'status', () =>
      db
        .select({ key: experts.status, n: sql<number>`count(*)` })
        .from(experts)
        .groupBy(experts.status)
        .all(),
    );
    countBy('archipelago_jobs', 'Jobs by status', 'status', () =>
      db
        .select({ key: jobs.status, n: sql<number>`count(*)` })
        .from(jobs)
        .groupBy(jobs.status)
        .all(),
    );
    new Gauge({
      name: 'archipelago_datasets',
      help: 'Imported datasets',
      registers: [registry],
      collect() {
        this.set(db.select({ n: sql<number>`count(*)` }).from(datasets).get()?.n ?? 0);
      },
    });

    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched';
      requests.inc({ method: request.method, route, status: String(reply.statusCode) });
      duration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
    });
    app.decorate('metrics', metrics);
    app.get(
      '/metrics',
      { schema: { tags: ['health'], summary: 'Prometheus metrics', hide: false } },
      async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()),
    );
  },
  { name: 'metrics' },
);
