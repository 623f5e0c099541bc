import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/** OpenAPI 3 generated from the route schemas; browsable at /docs, JSON at /docs/json. */
export default fp(
  async (app: FastifyInstance) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Archipelago coordinator',
          description:
            'Coordinator for heterogeneous decentralized diffusion models: datasets, clustering into shards, runs and experts.',
          version: '0.1.0',
        },
        components: {
          securitySchemes: {
            adminKey: { type: 'http', scheme: 'bearer', description: 'The admin API key' },
          },
        },
        tags: [
          { name: 'health', description: 'Liveness, readiness and metrics' },
          { name: 'datasets', description: 'Import and cluster datasets' },
          { name: 'runs', description: 'Training runs and their experts' },
          { name: 'jobs', description: 'Long-running coordinator work' },
          { name: 'workers', description: 'Worker tokens and connected workers' },
        ],
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });
  },
  { name: 'openapi' },
);
