import {
  CreateRunBody,
  ErrorReply,
  IdParams,
  ListQuery,
  Run,
  RunList,
} from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { createRun, getRun, listRuns } from '../../services/runs.js';

const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/',
    {
      onRequest: app.requireAdmin,
      schema: {
        tags: ['runs'],
        summary: 'Create a run: K experts over a clustering of a dataset',
        security: [{ adminKey: [] }],
        body: CreateRunBody,
        response: { 201: Run, 400: ErrorReply, 401: ErrorReply, 403: ErrorReply, 404: ErrorReply },
      },
    },
    async (request, reply) => reply.status(201).send(createRun(app.coordinator, request.body)),
  );

  app.get(
    '/',
    {
      schema: {
        tags: ['runs'],
        summary: 'List runs, newest first',
        querystring: ListQuery,
        response: { 200: RunList },
      },
    },
    async (request) => ({ runs: listRuns(app.coordinator.db, request.query.limit) }),
  );

  app.get(
    '/:id',
    {
      schema: {
        tags: ['runs'],
        summary: "A run with each expert's cluster, size, objective and status",
        params: IdParams,
        response: { 200: Run, 404: ErrorReply },
      },
    },
    async (request) => getRun(app.coordinator.db, request.params.id),
  );
};

export default routes;
