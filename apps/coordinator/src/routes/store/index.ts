import { handleLocalStoreRequest, LocalObjectStore } from '@archipelago/storage';
import type { FastifyPluginAsync } from 'fastify';
import { uploadRefusal } from '../../services/checkpoint-objects.js';

/**
 * Presigned URLs of the local object store: workers GET shards and PUT checkpoints here with an
 * HMAC-signed, expiring URL scoped to one object. (With S3 they talk to S3 directly.) A PUT URL
 * also dies with its upload: once the checkpoint was committed, rejected or superseded, or its
 * lease ended, the PUT is refused (403 upload_closed).
 */
const routes: FastifyPluginAsync = async (app) => {
  const { store, db } = app.coordinator;
  if (!(store instanceof LocalObjectStore)) return;
  // Leave request bodies unread: the handler streams uploads straight into the store.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));
  app.route({
    method: ['GET', 'HEAD', 'PUT'],
    url: '/*',
    schema: { hide: true },
    handler: async (request, reply) => {
      const url = new URL(request.raw.url ?? '/', 'http://localhost');
      const encoded = url.pathname.replace(/^\/store\//, '');
      let key: string;
      try {
        key = decodeURIComponent(encoded);
      } catch {
        return reply
          .status(400)
          .send({ error: { code: 'invalid_key', message: `cannot decode key ${encoded}` } });
      }
      reply.hijack();
      await handleLocalStoreRequest(store, request.raw, reply.raw, key, url.searchParams, {
        allowPut: (grant) => uploadRefusal(db, grant.key),
      }).catch((err) => request.log.error({ err, key }, 'local store request failed'));
    },
  });
};

export default routes;
