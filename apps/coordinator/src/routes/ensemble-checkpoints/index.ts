import { pipeline } from 'node:stream';
import { verifySha256 } from '@archipelago/storage';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { manifestFiles } from '../../ensembles/manifest.js';
import { DomainError } from '../../errors.js';
import { getEnsembleRow, readManifest } from '../../services/ensembles.js';

const FileParams = Type.Object(
  {
    id: Type.String({ pattern: '^ens_[0-9a-f]{32}$' }),
    file: Type.String({ pattern: '^(expert-[0-9]{1,4}|router)\\.safetensors$' }),
  },
  { additionalProperties: false },
);

/**
 * The checkpoints a published manifest names, served immutably. The bytes are hashed on the way
 * out: a response whose bytes do not hash to the manifest's sha256 never completes (its last
 * chunk is held back and the connection dropped), so nothing else is ever cached as the file.
 */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, store } = app.coordinator;

  app.get(
    '/ensembles/:id/checkpoints/:file',
    {
      schema: {
        tags: ['ensembles'],
        summary: 'A checkpoint the manifest names (safetensors)',
        params: FileParams,
      },
    },
    async (request, reply) => {
      getEnsembleRow(db, request.params.id);
      const { manifest } = await readManifest(store, request.params.id);
      const uri = `checkpoints/${request.params.file}`;
      const entry = manifestFiles(manifest).find((f) => f.file.uri === uri);
      if (!entry)
        throw new DomainError(
          'not_found',
          `ensemble ${manifest.id} has no file ${request.params.file}`,
        );
      return reply
        .type('application/octet-stream')
        .header('content-length', entry.file.bytes)
        .header('x-sha256', entry.file.sha256)
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(
          // An error on either side destroys the response (fastify); nothing more to do here.
          pipeline(
            await store.getStream(entry.file.key),
            verifySha256(entry.file.key, entry.file.sha256),
            () => {},
          ),
        );
    },
  );
};

export default routes;
