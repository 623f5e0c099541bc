import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { LiveFeed } from '../../services/live-feed.js';

/** Server-sent events for the dashboard: `data:` lines are LiveMessages. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const feed = new LiveFeed(app.coordinator.db, app.log);
  // Open streams would keep the HTTP server from closing.
  app.addHook('preClose', async () => feed.close());

  app.get(
    '/live',
    {
      schema: {
        tags: ['runs'],
        summary: 'Live updates (server-sent events): new events and expert progress',
        description:
          'A `text/event-stream` whose `data:` lines are LiveMessage JSON: `hello` first (then fetch what you show), `event` per new event-log row, `progress` per changed expert, `ping` every 15 s.',
        produces: ['text/event-stream'],
      },
    },
    (request, reply) => {
      reply.hijack();
      request.log.debug('live stream opened');
      feed.add(reply.raw);
    },
  );
};

export default routes;
