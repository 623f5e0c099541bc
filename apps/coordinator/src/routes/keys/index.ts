import { KeyList } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

/** The public keys manifests are signed with. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { signingKey } = app.coordinator;

  app.get(
    '/keys',
    {
      schema: {
        tags: ['ensembles'],
        summary: "The coordinator's manifest-signing public keys",
        response: { 200: KeyList },
      },
    },
    async () => ({
      keys: [
        {
          keyId: signingKey.keyId,
          alg: 'ed25519' as const,
          publicKey: signingKey.publicKeyRaw,
          pem: signingKey.publicKeyPem,
        },
      ],
    }),
  );
};

export default routes;
