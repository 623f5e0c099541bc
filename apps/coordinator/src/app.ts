import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Coordinator } from './coordinator.js';
import auth from './plugins/auth.js';
import errors from './plugins/errors.js';
import metrics from './plugins/metrics.js';
import openapi from './plugins/openapi.js';
import rateLimits from './plugins/rate-limits.js';
import viewKey from './plugins/view-key.js';
import dashboardRoutes from './routes/dashboard/index.js';
import datasetRoutes from './routes/datasets/index.js';
import ensembleCheckpointRoutes from './routes/ensemble-checkpoints/index.js';
import ensembleRoutes from './routes/ensembles/index.js';
import eventRoutes from './routes/events/index.js';
import expertExampleRoutes from './routes/expert-examples/index.js';
import healthRoutes from './routes/health/index.js';
import jobRoutes from './routes/jobs/index.js';
import keyRoutes from './routes/keys/index.js';
import liveRoutes from './routes/live/index.js';
import manifestRoutes from './routes/manifests/index.js';
import runCancelRoutes from './routes/run-cancel/index.js';
import runRouterRoutes from './routes/run-router/index.js';
import runRoutes from './routes/runs/index.js';
import sampleRoutes from './routes/samples/index.js';
import storeRoutes from './routes/store/index.js';
import tokenRoutes from './routes/tokens/index.js';
import trainingMetricRoutes from './routes/training-metrics/index.js';
import workerRoutes from './routes/workers/index.js';

declare module 'fastify' {
  interface FastifyInstance {
    coordinator: Coordinator;
  }
}

export type App = FastifyInstance;

/** Wire plugins and routes around an opened coordinator. Listening is `server.ts`'s job. */
export async function buildApp(coordinator: Coordinator): Promise<App> {
  const { config } = coordinator;
  const app = Fastify({
    loggerInstance: coordinator.log,
    bodyLimit: config.bodyLimitBytes,
    // Who the client is (request.ip), for every per-client limit: the peer unless told otherwise.
    trustProxy: config.trustProxy,
    // A request must have arrived in full within requestTimeoutMs (408 otherwise: a client that
    // trickles its headers or body holds nothing for long); idle connections are closed.
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: config.connectionTimeoutMs,
    // Node checks those deadlines this often (its default, 30 s, would let a slow client stay
    // that much past them); its headers deadline is what it applies to a trickled body as well.
    http: {
      connectionsCheckingInterval: Math.min(30_000, Math.ceil(config.requestTimeoutMs / 4)),
      headersTimeout: Math.min(60_000, config.requestTimeoutMs),
    },
    ajv: {
      // Reject unknown properties instead of silently dropping them; apply schema defaults.
      customOptions: {
        removeAdditional: false,
        useDefaults: true,
        coerceTypes: 'array',
        allErrors: false,
      },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.decorate('coordinator', coordinator);

  await app.register(errors);
  await app.register(openapi);
  await app.register(metrics);
  await app.register(rateLimits);
  await app.register(auth);
  await app.register(viewKey);

  await app.register(healthRoutes);
  await app.register(storeRoutes, { prefix: '/store' });
  await app.register(datasetRoutes, { prefix: '/api/v1/datasets' });
  await app.register(runRoutes, { prefix: '/api/v1/runs' });
  await app.register(jobRoutes, { prefix: '/api/v1/jobs' });
  await app.register(tokenRoutes, { prefix: '/api/v1/tokens' });
  await app.register(workerRoutes, { prefix: '/api/v1/workers' });
  await app.register(keyRoutes, { prefix: '/api/v1' });
  await app.register(ensembleRoutes, { prefix: '/api/v1' });
  await app.register(manifestRoutes, { prefix: '/api/v1' });
  await app.register(ensembleCheckpointRoutes, { prefix: '/api/v1' });
  await app.register(sampleRoutes, { prefix: '/api/v1' });
  await app.register(runRouterRoutes, { prefix: '/api/v1' });
  await app.register(eventRoutes, { prefix: '/api/v1' });
  await app.register(trainingMetricRoutes, { prefix: '/api/v1' });
  await app.register(expertExampleRoutes, { prefix: '/api/v1' });
  await app.register(runCancelRoutes, { prefix: '/api/v1' });
  await app.register(liveRoutes, { prefix: '/api/v1' });
  await app.register(dashboardRoutes);
  return app as unknown as App;
}
