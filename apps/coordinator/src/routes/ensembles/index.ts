import { Ensemble, EnsembleList, ErrorReply, IdParams } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { getEnsemble, listEnsembles } from '../../services/ensembles.js';
import { getRun } from '../../services/runs.js';
import { EnsembleParams } from './params.js';

/** Published ensembles: router accuracy by noise level, inference defaults, manifest link. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app.coordinator;

  app.get(
    '/ensembles',
    {
      schema: {
        tags: ['ensembles'],
        summary: 'Published ensembles, newest first',
        response: { 200: EnsembleList },
      },
    },
    async () => ({ ensembles: listEnsembles(db) }),
  );

  app.get(
    '/runs/:id/ensembles',
    {
      schema: {
        tags: ['ensembles'],
        summary: "A run's ensembles, newest first",
        params: IdParams,
        response: { 200: EnsembleList, 404: ErrorReply },
      },
    },
    async (request) => {
      getRun(db, request.params.id);
      return { ensembles: listEnsembles(db, request.params.id) };
    },
  );

  app.get(
    '/ensembles/:id',
    {
      schema: {
        tags: ['ensembles'],
        summary: 'An ensemble: router accuracy, inference defaults, manifest link',
        params: EnsembleParams,
        response: { 200: Ensemble, 404: ErrorReply },
      },
    },
    async (request) => getEnsemble(db, request.params.id),
  );
};

export default routes;
