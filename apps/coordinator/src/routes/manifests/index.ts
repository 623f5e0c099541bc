import { ErrorReply, IdParams } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import {
  checkFile,
  ManifestError,
  manifestFiles,
  verifyManifest,
} from '../../ensembles/manifest.js';
import { getEnsembleRow, latestEnsembleRow, readManifest } from '../../services/ensembles.js';
import { EnsembleParams } from '../ensembles/params.js';

const Verification = Type.Object(
  {
    ok: Type.Boolean(),
    id: Type.Boolean(),
    signature: Type.Boolean(),
    keyId: Type.String(),
    /** The signing key is this coordinator's own key. */
    trusted: Type.Boolean(),
    error: Type.Optional(Type.String()),
    checkpoints: Type.Array(
      Type.Object({
        name: Type.String(),
        ok: Type.Boolean(),
        reason: Type.Optional(Type.String()),
      }),
    ),
  },
  { title: 'ManifestVerification' },
);

/** Signed manifests, byte for byte as published, and their verification. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, store, signingKey } = app.coordinator;

  const sendManifest = async (id: string, reply: FastifyReply) => {
    const { text } = await readManifest(store, id);
    return reply
      .type('application/json; charset=utf-8')
      .header('content-disposition', `attachment; filename="${id}.manifest.json"`)
      .header('cache-control', 'public, max-age=31536000, immutable')
      .send(text);
  };

  app.get(
    '/ensembles/:id/manifest.json',
    {
      schema: {
        tags: ['ensembles'],
        summary: 'The signed manifest, byte for byte as published (immutable)',
        params: EnsembleParams,
      },
    },
    async (request, reply) => {
      getEnsembleRow(db, request.params.id);
      return sendManifest(request.params.id, reply);
    },
  );

  app.get(
    '/runs/:id/manifest.json',
    {
      schema: {
        tags: ['ensembles'],
        summary: "The run's latest published manifest",
        params: IdParams,
      },
    },
    async (request, reply) => {
      const row = latestEnsembleRow(db, request.params.id);
      reply.header('content-location', `/api/v1/ensembles/${row.id}/manifest.json`);
      const { text } = await readManifest(store, row.id);
      // Relative checkpoint URIs resolve against the ensemble's own URL, not this alias.
      return reply
        .type('application/json; charset=utf-8')
        .header('content-disposition', `attachment; filename="${row.id}.manifest.json"`)
        .send(text);
    },
  );

  app.get(
    '/ensembles/:id/verify',
    {
      schema: {
        tags: ['ensembles'],
        summary: "Check the manifest's id, signature and every checkpoint's size and sha256",
        params: EnsembleParams,
        response: { 200: Verification, 404: ErrorReply },
      },
    },
    async (request) => {
      getEnsembleRow(db, request.params.id);
      const { manifest } = await readManifest(store, request.params.id);
      let idOk = true;
      let sigOk = true;
      let error: string | undefined;
      try {
        verifyManifest(manifest);
      } catch (err) {
        if (!(err instanceof ManifestError)) throw err;
        error = err.message;
        if (err.code === 'id_mismatch') idOk = false;
        sigOk = false;
      }
      const checkpoints = [];
      for (const { name, file } of manifestFiles(manifest)) {
        try {
          checkFile(name, file, await store.getBytes(file.key));
          checkpoints.push({ name, ok: true });
        } catch (err) {
          checkpoints.push({ name, ok: false, reason: (err as Error).message });
        }
      }
      return {
        ok: idOk && sigOk && checkpoints.every((c) => c.ok),
        id: idOk,
        signature: sigOk,
        keyId: manifest.signature.keyId,
        trusted: manifest.signature.publicKey === signingKey.publicKeyRaw,
        ...(error ? { error } : {}),
        checkpoints,
      };
    },
  );
};

export default routes;
