import { ErrorReply, SampleRequest, SampleResponse } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { DomainError } from '../../errors.js';
import { RATE_WINDOW_MS } from '../../plugins/rate-limits.js';
import { getEnsembleRow } from '../../services/ensembles.js';
import { gridPng, resolveSettings, samplePngs } from '../../services/sampling.js';
import { EnsembleParams } from '../ensembles/params.js';

const seconds = (since: number) => (performance.now() - since) / 1000;

/** A failed request's outcome label (archipelago_sampling_request_seconds). */
function outcomeOf(err: unknown): 'busy' | 'cancelled' | 'error' {
  const code = err instanceof DomainError ? err.code : null;
  if (code === 'busy' || code === 'client_busy') return 'busy';
  return code === 'cancelled' ? 'cancelled' : 'error';
}

/** Sampling from a published ensemble. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, sampling, config } = app.coordinator;

  app.post(
    '/ensembles/:id/samples',
    {
      schema: {
        tags: ['ensembles'],
        summary:
          'Sample from an ensemble: a PNG grid (Accept: image/png) or JSON with one PNG per sample and routing statistics',
        description:
          'Per client: `sampleRateLimit` requests a minute (429 `rate_limited`) and `maxQueuedSamplesPerClient` waiting or running at once (429 `client_busy`). A request whose client disconnects is dropped, waiting or running.',
        params: EnsembleParams,
        body: SampleRequest,
        response: {
          200: SampleResponse,
          400: ErrorReply,
          404: ErrorReply,
          413: ErrorReply,
          429: ErrorReply,
        },
      },
      config: { rateLimit: { max: config.sampleRateLimit, timeWindow: RATE_WINDOW_MS } },
    },
    async (request, reply) => {
      getEnsembleRow(db, request.params.id);
      const loaded = await sampling.describe(request.params.id);
      const settings = resolveSettings(request.body, loaded);
      // The response closing before it was written means the client went away.
      const gone = new AbortController();
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) gone.abort();
      });
      const started = performance.now();
      const out = await sampling
        .sample(request.params.id, settings, { client: request.ip, signal: gone.signal })
        .then(
          (out) => {
            app.metrics.sampleSeconds.observe({ outcome: 'ok' }, seconds(started));
            return out;
          },
          (err: unknown) => {
            app.metrics.sampleSeconds.observe({ outcome: outcomeOf(err) }, seconds(started));
            throw err;
          },
        );
      const accept = request.headers.accept ?? '';
      if (/image\/png/.test(accept) && !/application\/json/.test(accept)) {
        // A Buffer is sent as is; the JSON schema only describes the other representation.
        return (reply as FastifyReply)
          .type('image/png')
          .send(await gridPng(out, request.body.columns));
      }
      return {
        ensembleId: request.params.id,
        settings,
        images: await samplePngs(out),
        perSample: out.perSample,
        routing: out.routing,
        seconds: out.seconds,
      };
    },
  );
};

export default routes;
