import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Coordinator } from './coordinator.js';
import auth from './plugins/auth.js';
import errors from './plugins/errors.js';
import metrics from './plugins/metrics.js';
import openapi from './plugins/openapi.js';
import datasetRoutes from './routes/datasets/index.js';
import healthRoutes from './routes/health/index.js';
import jobRoutes from './routes/jobs/index.js';
import runRoutes from './routes/runs/index.js';
import storeRoutes from './routes/store/index.js';
import tokenRoutes from './routes/tokens/index.js';
import workerRoutes from './routes/workers/index.js';

declare module 'fastify' {
  interface FastifyInstance {
    coordinator: Coordinator;
  }
}

export type App = FastifyInstance;

/** Wire plugins and routes around an opened coordinator. Listening is `server.ts`'s job. */
export async function buildApp(coordinator: Coordinator): Promise<App> {
  const app = Fastify({
    loggerInstance: coordinator.log,
    bodyLimit: coordinator.config.bodyLimitBytes,
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
  await app.register(auth);

  await app.register(healthRoutes);
  await app.register(storeRoutes, { prefix: '/store' });
  await app.register(datasetRoutes, { prefix: '/api/v1/datasets' });
  await app.register(runRoutes, { prefix: '/api/v1/runs' });
  await app.register(jobRoutes, { prefix: '/api/v1/jobs' });
  await app.register(tokenRoutes, { prefix: '/api/v1/tokens' });
  await app.register(workerRoutes, { prefix: '/api/v1/workers' });
  return app as unknown as App;
}
