import { ErrorReply, IdParams, Job } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { getJob } from '../../services/jobs.js';

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/:id',
    {
      schema: {
        tags: ['jobs'],
        summary: 'A job: status, progress, result or error',
        params: IdParams,
        response: { 200: Job, 404: ErrorReply },
      },
    },
    async (request) => getJob(app.coordinator.db, request.params.id),
  );
};

export default routes;
