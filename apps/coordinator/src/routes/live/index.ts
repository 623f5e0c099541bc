import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { LiveFeed } from '../../services/live-feed.js';

/** Server-sent events for the dashboard: `data:` lines are LiveMessages. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { config } = app.coordinator;
  const feed = new LiveFeed(app.coordinator.db, app.log, {
    maxStreams: config.maxEventStreams,
    maxPerClient: config.maxEventStreamsPerClient,
  });
  // Open streams would keep the HTTP server from closing.
  app.addHook('preClose', async () => feed.close());

  app.get(
    '/live',
    {
      schema: {
        tags: ['runs'],
        summary: 'Live updates (server-sent events): new events and expert progress',
        description:
          'A `text/event-stream` whose `data:` lines are LiveMessage JSON: `hello` first (then fetch what you show), `event` per new event-log row, `progress` per changed expert, `ping` every 15 s. Streams are capped in all and per client (429 `too_many_streams`).',
        produces: ['text/event-stream'],
      },
    },
    (request, reply) => {
      // Refused (429 too_many_streams) before the stream starts, like any error reply.
      feed.admit(request.ip);
      reply.hijack();
      request.log.debug('live stream opened');
      feed.add(reply.raw, request.ip);
    },
  );
};

export default routes;
