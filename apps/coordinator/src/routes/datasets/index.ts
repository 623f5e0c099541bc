import {
  ClusterBody,
  Clustering,
  Dataset,
  DatasetList,
  ErrorReply,
  Id,
  IdParams,
  ImportDatasetBody,
  JobAccepted,
  ListQuery,
} from '@archipelago/protocol';
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox';
import { and, eq } from 'drizzle-orm';
import { clusterings } from '../../db/schema/index.js';
import { DomainError } from '../../errors.js';
import { newId } from '../../ids.js';
import {
  getClustering,
  getDataset,
  listDatasets,
  precheckImport,
} from '../../services/datasets.js';
import { acceptJob } from '../../services/jobs.js';

const ClusteringParams = Type.Object({ id: Id, clusteringId: Id }, { additionalProperties: false });
const adminErrors = { 400: ErrorReply, 401: ErrorReply, 403: ErrorReply, 404: ErrorReply };

const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, jobs } = app.coordinator;

  app.post(
    '/',
    {
      onRequest: app.requireAdmin,
      schema: {
        tags: ['datasets'],
        summary: 'Import a dataset (and optionally cluster it) as a job',
        description:
          'Reads a folder of PNG/JPEG images on the coordinator or a built-in dataset, computes features (given .npy embeddings, else PCA of the pixels) and, with `cluster`, partitions it into K shards. Poll the returned job.',
        security: [{ adminKey: [] }],
        body: ImportDatasetBody,
        response: { 202: JobAccepted, ...adminErrors },
      },
    },
    async (request, reply) => {
      await precheckImport(request.body);
      const datasetId = newId('dataset');
      const job = jobs.enqueue(
        'import-dataset',
        {
          body: request.body,
          datasetId,
          ...(request.body.cluster ? { clusteringId: newId('clustering') } : {}),
        },
        { datasetId, maxAttempts: 2 },
      );
      return acceptJob(reply, job);
    },
  );

  app.get(
    '/',
    {
      schema: {
        tags: ['datasets'],
        summary: 'List datasets, newest first',
        querystring: ListQuery,
        response: { 200: DatasetList },
      },
    },
    async (request) => ({ datasets: listDatasets(db, request.query.limit) }),
  );

  app.get(
    '/:id',
    {
      schema: {
        tags: ['datasets'],
        summary: 'A dataset with its clusterings and shards',
        params: IdParams,
        response: { 200: Dataset, 404: ErrorReply },
      },
    },
    async (request) => getDataset(db, request.params.id),
  );

  app.post(
    '/:id/clusterings',
    {
      onRequest: app.requireAdmin,
      schema: {
        tags: ['datasets'],
        summary: 'Cluster a dataset into K shards (two-level k-means) as a job',
        security: [{ adminKey: [] }],
        params: IdParams,
        body: ClusterBody,
        response: { 202: JobAccepted, ...adminErrors },
      },
    },
    async (request, reply) => {
      const dataset = getDataset(db, request.params.id);
      const { k, fineK } = request.body;
      if (k > dataset.count) {
        throw new DomainError(
          'too_small',
          `${k} clusters need at least ${k} images; dataset ${dataset.id} has ${dataset.count}`,
        );
      }
      if (fineK !== undefined && fineK < k) {
        throw new DomainError('validation_error', `fineK (${fineK}) must be at least k (${k})`);
      }
      const job = jobs.enqueue(
        'cluster-dataset',
        { ...request.body, datasetId: dataset.id, clusteringId: newId('clustering') },
        { datasetId: dataset.id },
      );
      return acceptJob(reply, job);
    },
  );

  app.get(
    '/:id/clusterings/:clusteringId',
    {
      schema: {
        tags: ['datasets'],
        summary: 'A clustering: cluster sizes, inertia and shards',
        params: ClusteringParams,
        response: { 200: Clustering, 404: ErrorReply },
      },
    },
    async (request) => getClustering(db, request.params.id, request.params.clusteringId),
  );

  app.get(
    '/:id/clusterings/:clusteringId/preview.png',
    {
      schema: {
        tags: ['datasets'],
        summary: 'PNG grid with one row of example images per cluster',
        params: ClusteringParams,
        produces: ['image/png'],
        response: {
          200: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }),
          404: ErrorReply,
        },
      },
    },
    async (request, reply) => {
      const c = db
        .select()
        .from(clusterings)
        .where(
          and(
            eq(clusterings.id, request.params.clusteringId),
            eq(clusterings.datasetId, request.params.id),
          ),
        )
        .get();
      if (!c)
        throw new DomainError(
          'not_found',
          `clustering ${request.params.clusteringId} of dataset ${request.params.id} does not exist`,
        );
      const png = await app.coordinator.store.getBytes(c.previewKey);
      return reply
        .type('image/png')
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(png);
    },
  );
};

export default routes;
