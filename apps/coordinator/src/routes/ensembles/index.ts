import {
  Ensemble,
  EnsembleList,
  ErrorReply,
  IdParams,
  JobAccepted,
  KeyList,
  SampleRequest,
  SampleResponse,
} from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import {
  checkFile,
  ManifestError,
  manifestFiles,
  verifyManifest,
} from '../../ensembles/manifest.js';
import { ApiError } from '../../errors.js';
import {
  getEnsemble,
  getEnsembleRow,
  latestEnsembleRow,
  listEnsembles,
  readManifest,
} from '../../services/ensembles.js';
import { acceptJob } from '../../services/jobs.js';
import { getRun } from '../../services/runs.js';
import { gridPng, resolveSettings, samplePngs } from '../../services/sampling.js';

const FileParams = Type.Object(
  {
    id: Type.String({ pattern: '^ens_[0-9a-f]{32}$' }),
    file: Type.String({ pattern: '^(expert-[0-9]{1,4}|router)\\.safetensors$' }),
  },
  { additionalProperties: false },
);
const EnsembleParams = Type.Object(
  { id: Type.String({ pattern: '^ens_[0-9a-f]{32}$' }) },
  { additionalProperties: false },
);
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

/** Ensembles: manifests, their files, verification, signing keys, sampling, router training. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, store, signingKey, sampling, jobs } = app.coordinator;

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
        throw new ApiError(
          404,
          'not_found',
          `ensemble ${manifest.id} has no file ${request.params.file}`,
        );
      return reply
        .type('application/octet-stream')
        .header('content-length', entry.file.bytes)
        .header('x-sha256', entry.file.sha256)
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(await store.getStream(entry.file.key));
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

  app.post(
    '/ensembles/:id/samples',
    {
      schema: {
        tags: ['ensembles'],
        summary:
          'Sample from an ensemble: a PNG grid (Accept: image/png) or JSON with one PNG per sample and routing statistics',
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
    },
    async (request, reply) => {
      getEnsembleRow(db, request.params.id);
      const loaded = await sampling.describe(request.params.id);
      const settings = resolveSettings(request.body, loaded);
      const out = await sampling.sample(request.params.id, settings);
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

  app.post(
    '/runs/:id/router',
    {
      onRequest: app.requireAdmin,
      schema: {
        tags: ['ensembles'],
        summary:
          'Train a new router for a run whose experts are all done (then publish a new ensemble)',
        security: [{ adminKey: [] }],
        params: IdParams,
        response: {
          202: JobAccepted,
          401: ErrorReply,
          403: ErrorReply,
          404: ErrorReply,
          409: ErrorReply,
        },
      },
    },
    async (request, reply) => {
      const run = getRun(db, request.params.id);
      const notDone = run.experts.find((e) => e.status !== 'done');
      if (notDone)
        throw new ApiError(
          409,
          'conflict',
          `expert ${notDone.cluster} is ${notDone.status}; the router needs every expert done`,
        );
      const job = jobs.enqueue('train-router', { runId: run.id }, { runId: run.id });
      return acceptJob(reply, job);
    },
  );
};

export default routes;
