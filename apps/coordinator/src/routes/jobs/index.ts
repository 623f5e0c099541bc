import { ErrorReply, IdParams, Job, JobList, JobListQuery } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { getJob, listJobs } from '../../services/jobs.js';

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Jobs, newest first; filter by status',
        querystring: JobListQuery,
        response: { 200: JobList },
      },
    },
    async (request) => ({ jobs: listJobs(app.coordinator.db, request.query) }),
  );

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
