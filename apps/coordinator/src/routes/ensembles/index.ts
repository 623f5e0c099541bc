import {
  Ensemble,
  EnsembleList,
  EnsembleScoreReply,
  ErrorReply,
  IdParams,
} from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { readScore, readScoreFigure } from '../../services/ensemble-scores.js';
import { getEnsemble, listEnsembles } from '../../services/ensembles.js';
import { getRun } from '../../services/runs.js';
import { EnsembleParams } from './params.js';

/**
 * Published ensembles: router accuracy by noise level, inference defaults, manifest link; and
 * their scores (FD-cls and the rest, computed by the `score-ensemble` job after publishing).
 */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, store } = app.coordinator;

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

  const scoreErrors = {
    404: { ...ErrorReply, description: 'not_found, not_scored or score_disabled' },
    409: { ...ErrorReply, description: 'score_pending (details: job, progress) or score_failed' },
  };

  app.get(
    '/ensembles/:id/score',
    {
      schema: {
        tags: ['ensembles'],
        summary:
          "The ensemble's score: FD-cls (Frechet distance in the features of a classifier trained on the dataset, not FID), precision, recall, intra-class diversity, fragment index, the real-train reference, samples, seed and settings",
        params: EnsembleParams,
        response: { 200: EnsembleScoreReply, ...scoreErrors },
      },
    },
    async (request) => readScore(db, store, request.params.id),
  );

  app.get(
    '/ensembles/:id/score.png',
    {
      schema: {
        tags: ['ensembles'],
        summary: 'The score figure: a grid of the scored samples beside the numbers (PNG)',
        params: EnsembleParams,
        response: {
          200: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }),
          ...scoreErrors,
        },
      },
    },
    async (request, reply) => {
      const png = await readScoreFigure(db, store, request.params.id);
      return reply
        .type('image/png')
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(png);
    },
  );
};

export default routes;
