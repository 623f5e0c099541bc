import { ErrorReply, Id } from '@archipelago/protocol';
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox';
import { EXAMPLES_PER_STRIP, ExpertExamples } from '../../services/expert-examples.js';

const ExpertParams = Type.Object(
  { id: Id, cluster: Type.Integer({ minimum: 0 }) },
  { additionalProperties: false },
);

/** What each expert learns from: a strip of images from its training shard. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const examples = new ExpertExamples(app.coordinator.db, app.coordinator.store);

  app.get(
    '/runs/:id/experts/:cluster/examples.png',
    {
      schema: {
        tags: ['runs'],
        summary: `PNG strip of ${EXAMPLES_PER_STRIP} example images from an expert's training shard`,
        params: ExpertParams,
        produces: ['image/png'],
        response: {
          200: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }),
          404: ErrorReply,
        },
      },
    },
    async (request, reply) => {
      const png = await examples.strip(request.params.id, request.params.cluster);
      // Shards never change, but an expert is bound to its shard only once clustering is done.
      return reply.type('image/png').header('cache-control', 'public, max-age=3600').send(png);
    },
  );
};

export default routes;
