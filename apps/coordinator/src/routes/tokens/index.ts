import { ErrorReply, IdParams } from '@archipelago/protocol';
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox';
import { createToken, listTokens, revokeToken } from '../../services/tokens.js';

const TokenView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  prefix: Type.String(),
  createdAt: Type.String(),
  lastUsedAt: Type.Union([Type.String(), Type.Null()]),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
});
const adminErrors = { 401: ErrorReply, 403: ErrorReply, 404: ErrorReply };

/** Worker tokens (admin only): create (the secret is shown once), list, revoke. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('onRequest', app.requireAdmin);
  const { db, hub } = app.coordinator;

  app.post(
    '/',
    {
      schema: {
        tags: ['workers'],
        summary: 'Create a worker token; its secret is in this reply only',
        security: [{ adminKey: [] }],
        body: Type.Object(
          { name: Type.String({ minLength: 1, maxLength: 100 }) },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Intersect([TokenView, Type.Object({ token: Type.String() })]),
          400: ErrorReply,
          ...adminErrors,
        },
      },
    },
    async (request, reply) => reply.status(201).send(createToken(db, request.body.name)),
  );

  app.get(
    '/',
    {
      schema: {
        tags: ['workers'],
        summary: 'Worker tokens (no secrets)',
        security: [{ adminKey: [] }],
        response: { 200: Type.Object({ tokens: Type.Array(TokenView) }), ...adminErrors },
      },
    },
    async () => ({ tokens: listTokens(db) }),
  );

  app.delete(
    '/:id',
    {
      schema: {
        tags: ['workers'],
        summary: "Revoke a token: its workers' connections close and their leases end",
        security: [{ adminKey: [] }],
        params: IdParams,
        response: {
          200: Type.Intersect([TokenView, Type.Object({ closedConnections: Type.Integer() })]),
          ...adminErrors,
        },
      },
    },
    async (request) => {
      const { endedLeases, ...view } = revokeToken(db, request.params.id);
      hub.notifyLeasesEnded(endedLeases, 'worker token revoked');
      return { ...view, closedConnections: hub.revokeToken(view.id) };
    },
  );
};

export default routes;
