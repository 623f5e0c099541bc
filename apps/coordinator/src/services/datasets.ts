import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  buildShards,
  clusterDataset,
  computeFeatures,
  DatasetImportError,
  decodeShard,
  encodeNpy,
  encodeShard,
  type ImageSet,
  listImageFolder,
  loadBuiltinDataset,
  parseNpy,
  readEmbeddings,
  readImageFolder,
  renderGrid,
} from '@archipelago/data';
import type {
  ClusterAssignment,
  ClusterBody,
  Clustering,
  Dataset,
  ImportDatasetBody,
} from '@archipelago/protocol';
import { type ObjectStore, sha256Hex } from '@archipelago/storage';
import { asc, desc, eq } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db, Tx } from '../db/database.js';
import {
  type ClusteringRow,
  clusterings,
  type DatasetRow,
  datasets,
  runs,
  type ShardRow,
  shards,
} from '../db/schema/index.js';
import { DomainError, notFound, PermanentJobError } from '../errors.js';
import { newId } from '../ids.js';
import { EVENTS, recordEvent } from '../lifecycle/events.js';
import { bindRunToClustering } from './runs.js';

export interface DatasetDeps {
  db: Db;
  store: ObjectStore;
  log: Logger;
}

export type Progress = (stage: string, done: number, total: number) => void;

const noProgress: Progress = () => {};

/** Default resolution of a folder import when none is given. */
export const DEFAULT_FOLDER_RESOLUTION = 32;
/** Seed of the PCA fit; fixed so a dataset's features never depend on a clustering's seed. */
const FEATURE_SEED = 0;
/** Example images per cluster in a clustering's preview grid. */
const PREVIEW_PER_CLUSTER = 16;

export const datasetPrefix = (datasetId: string) => `datasets/${datasetId}/`;
export const clusteringPrefix = (datasetId: string, clusteringId: string) =>
  `datasets/${datasetId}/clusterings/${clusteringId}/`;

/**
 * Check what can be checked before a job is queued, so obvious mistakes get a 400 at once:
 * the folder and the embeddings file exist and are readable.
 */
export async function precheckImport(body: ImportDatasetBody): Promise<void> {
  if (body.source.kind === 'folder') {
    const s = await stat(body.source.path).catch(() => null);
    if (!s?.isDirectory()) {
      throw new DomainError(
        'folder_not_found',
        `${body.source.path} is not a readable folder on the coordinator`,
      );
    }
  }
  if (body.embeddingsPath) {
    const s = await stat(body.embeddingsPath).catch(() => null);
    if (!s?.isFile()) {
      throw new DomainError(
        'embeddings_not_found',
        `embeddings file ${body.embeddingsPath} does not exist`,
      );
    }
    if (!body.embeddingsPath.toLowerCase().endsWith('.npy')) {
      throw new DomainError(
        'unsupported_format',
        `embeddings file ${body.embeddingsPath} is not a .npy file`,
      );
    }
  }
  if (body.cluster?.fineK !== undefined && body.cluster.fineK < body.cluster.k) {
    throw new DomainError(
      'validation_error',
      `cluster.fineK (${body.cluster.fineK}) must be at least cluster.k (${body.cluster.k})`,
    );
  }
}

async function loadImages(body: ImportDatasetBody, progress: Progress): Promise<ImageSet> {
  if (body.source.kind === 'builtin') {
    progress('reading images', 0, 1);
    const set = await loadBuiltinDataset(body.source.name, {
      ...(body.resolution ? { resolution: body.resolution } : {}),
      ...(body.channels ? { channels: body.channels } : {}),
    });
    progress('reading images', 1, 1);
    return set;
  }
  const { path: dir, labelsFromSubfolders } = body.source;
  return readImageFolder(dir, {
    resolution: body.resolution ?? DEFAULT_FOLDER_RESOLUTION,
    channels: body.channels ?? 3,
    ...(labelsFromSubfolders !== undefined ? { labelsFromSubfolders } : {}),
    onProgress: (done, total) => progress('reading images', done, total),
  });
}

async function loadEmbeddings(file: string, rows: number) {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new PermanentJobError(
      `cannot read embeddings file ${file}: ${(err as Error).message}`,
      'embeddings_not_found',
    );
  }
  return readEmbeddings(bytes, rows, path.basename(file));
}

interface ClusteringParams {
  k: number;
  assignment: ClusterAssignment;
  fineK?: number | undefined;
  seed: number;
  valFraction: number;
}

export interface ClusteringWrite {
  clustering: typeof clusterings.$inferInsert;
  shardRows: (typeof shards.$inferInsert)[];
}

/**
 * Two-level k-means of the features (its clusters, or random shards of its sizes: `assignment`),
 * then one train and one val shard per cluster plus a preview grid, written to the store. Returns the rows for the caller to insert in its transaction.
 */
async function clusterAndWrite(
  deps: { store: ObjectStore },
  datasetId: string,
  clusteringId: string,
  images: ImageSet,
  features: { features: Float32Array; n: number; d: number; kind: 'pca' | 'embeddings' },
  params: ClusteringParams,
  progress: Progress,
): Promise<ClusteringWrite> {
  const started = performance.now();
  const result = await clusterDataset(features.features, features.n, features.d, {
    k: params.k,
    assignment: params.assignment,
    seed: params.seed,
    ...(params.fineK !== undefined ? { fineK: params.fineK } : {}),
    onProgress: ({ stage, iteration, maxIter }) =>
      progress(stage === 'fine' ? 'clustering (fine)' : 'clustering (coarse)', iteration, maxIter),
  });
  const built = buildShards(images, result.assignments, params.k, {
    valFraction: params.valFraction,
    seed: params.seed,
  });
  const prefix = clusteringPrefix(datasetId, clusteringId);
  const shardRows: (typeof shards.$inferInsert)[] = [];
  let written = 0;
  for (const c of built) {
    for (const [split, file] of [
      ['train', c.train],
      ['val', c.val],
    ] as const) {
      const base = `${prefix}shards/${c.cluster}${split === 'val' ? '.val' : ''}`;
      await deps.store.put(`${base}.bin`, file.bytes, {
        contentType: 'application/octet-stream',
        sha256: file.index.sha256,
      });
      await deps.store.put(`${base}.json`, Buffer.from(JSON.stringify(file.index)), {
        contentType: 'application/json',
      });
      shardRows.push({
        id: newId('shard'),
        clusteringId,
        cluster: c.cluster,
        split,
        key: `${base}.bin`,
        indexKey: `${base}.json`,
        count: file.index.count,
        bytes: file.index.bytes,
        sha256: file.index.sha256,
        classCounts: file.index.classCounts,
      });
      progress('writing shards', ++written, built.length * 2);
    }
  }
  const rows = built.map((c) => c.train.index.sourceIndices.slice(0, PREVIEW_PER_CLUSTER));
  const preview = await renderGrid(images, rows, { scale: images.height <= 32 ? 2 : 1 });
  const previewKey = `${prefix}preview.png`;
  await deps.store.put(previewKey, preview, { contentType: 'image/png' });
  return {
    clustering: {
      id: clusteringId,
      datasetId,
      k: params.k,
      assignment: params.assignment,
      fineK: result.fineK,
      seed: params.seed,
      valFraction: params.valFraction,
      featureKind: features.kind,
      sizes: Array.from(result.sizes),
      inertia: result.inertia,
      fineInertia: result.fineInertia,
      previewKey,
      durationMs: performance.now() - started,
    },
    shardRows,
  };
}

function insertClustering(tx: Tx, write: ClusteringWrite) {
  tx.insert(clusterings).values(write.clustering).run();
  for (const row of write.shardRows) tx.insert(shards).values(row).run();
  recordEvent(tx, EVENTS.clusteringCreated, {
    datasetId: write.clustering.datasetId,
    data: {
      clusteringId: write.clustering.id,
      k: write.clustering.k,
      assignment: write.clustering.assignment ?? 'semantic',
      sizes: write.clustering.sizes,
      inertia: write.clustering.inertia,
    },
  });
}

export interface ImportResult {
  datasetId: string;
  clusteringId?: string;
}

/**
 * What an import's compute needs: the request, and, when it reads the coordinator's disk (a folder,
 * an embeddings file) and runs elsewhere, those files staged in the object store
 * (docs/architecture.md "The job pipeline").
 */
export interface ImportInput {
  body: ImportDatasetBody;
  datasetId: string;
  clusteringId?: string;
  staged?: StagedImport;
}

/** Files of an import copied into the store: `files[i]` (a folder's relative path) at `<prefix>files/<i>`. */
export interface StagedImport {
  prefix: string;
  files?: string[];
  /** The embeddings file's name; its bytes are at `<prefix>embeddings.npy`. */
  embeddings?: string;
}

/** Where an import's staged files go (deleted once the import is recorded). */
export const importStagingPrefix = (datasetId: string) => `staging/imports/${datasetId}/`;

/** Files staged at once. */
const STAGE_CONCURRENCY = 8;

/**
 * Copy what an import reads from the coordinator's disk into the object store, so that a job
 * processor on another machine can compute it: every file of the folder that reading it would
 * read (`listImageFolder`, in the same order), and the embeddings file.
 */
export async function stageImport(
  store: ObjectStore,
  body: ImportDatasetBody,
  datasetId: string,
): Promise<StagedImport | undefined> {
  if (!importReadsCoordinatorDisk(body)) return undefined;
  const prefix = importStagingPrefix(datasetId);
  await store.deletePrefix(prefix);
  const staged: StagedImport = { prefix };
  if (body.source.kind === 'folder') {
    const dir = body.source.path;
    const files = await listImageFolder(dir);
    for (let start = 0; start < files.length; start += STAGE_CONCURRENCY) {
      await Promise.all(
        files.slice(start, start + STAGE_CONCURRENCY).map(async (file, j) => {
          let bytes: Buffer;
          try {
            bytes = await readFile(path.join(dir, file));
          } catch (err) {
            throw new DatasetImportError(
              'corrupt_image',
              `${file}: cannot read file (${(err as Error).message})`,
              file,
              { cause: err },
            );
          }
          await store.put(`${prefix}files/${start + j}`, bytes);
        }),
      );
    }
    staged.files = files;
  }
  if (body.embeddingsPath) {
    let bytes: Buffer;
    try {
      bytes = await readFile(body.embeddingsPath);
    } catch (err) {
      throw new PermanentJobError(
        `cannot read embeddings file ${body.embeddingsPath}: ${(err as Error).message}`,
        'embeddings_not_found',
      );
    }
    await store.put(`${prefix}embeddings.npy`, bytes);
    staged.embeddings = path.basename(body.embeddingsPath);
  }
  return staged;
}

/** A relative path of a staged folder that stays inside it. */
function safeRelative(file: string): string {
  const parts = file.split('/');
  if (file.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..'))
    throw new PermanentJobError(
      `staged file name ${JSON.stringify(file)} is not a plain relative path`,
    );
  return parts.join(path.sep);
}

/**
 * The staged files back on this machine's disk, in a temporary folder: the body to import them
 * with (its folder and embeddings paths there) and a cleanup.
 */
async function unstageImport(
  store: ObjectStore,
  body: ImportDatasetBody,
  staged: StagedImport,
): Promise<{ body: ImportDatasetBody; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(path.join(tmpdir(), 'archipelago-import-'));
  const cleanup = () => rm(root, { recursive: true, force: true });
  try {
    let local: ImportDatasetBody = body;
    if (staged.files && body.source.kind === 'folder') {
      const dir = path.join(root, 'folder');
      const files = staged.files;
      for (let start = 0; start < files.length; start += STAGE_CONCURRENCY) {
        await Promise.all(
          files.slice(start, start + STAGE_CONCURRENCY).map(async (file, j) => {
            const target = path.join(dir, safeRelative(file));
            await mkdir(path.dirname(target), { recursive: true });
            await writeFile(target, await store.getBytes(`${staged.prefix}files/${start + j}`));
          }),
        );
      }
      await mkdir(dir, { recursive: true });
      local = { ...local, source: { ...body.source, path: dir } };
    }
    if (staged.embeddings) {
      const file = path.join(root, safeRelative(path.basename(staged.embeddings)));
      await writeFile(file, await store.getBytes(`${staged.prefix}embeddings.npy`));
      local = { ...local, embeddingsPath: file };
    }
    return { body: local, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** What an import wrote to the store, as the rows {@link applyImport} inserts (plain JSON). */
export interface ImportOutput {
  dataset: typeof datasets.$inferInsert;
  clustering?: ClusteringWrite;
}

/** Whether an import reads files on the coordinator's own disk (a folder, an embeddings file). */
export function importReadsCoordinatorDisk(body: ImportDatasetBody): boolean {
  return body.source.kind === 'folder' || body.embeddingsPath !== undefined;
}

/** An import already done (a re-run after a crash): its result, else undefined. */
export function importDone(db: Db, ids: { datasetId: string; clusteringId?: string }) {
  const existing = db.select().from(datasets).where(eq(datasets.id, ids.datasetId)).get();
  if (!existing) return undefined;
  const c = ids.clusteringId
    ? db.select().from(clusterings).where(eq(clusterings.id, ids.clusteringId)).get()
    : undefined;
  return { datasetId: ids.datasetId, ...(c ? { clusteringId: c.id } : {}) } as ImportResult;
}

/**
 * The store half of an import: read and normalise the images, compute features (given embeddings
 * or PCA), store both, and optionally cluster. Reads no database; on any failure the objects
 * written so far are deleted. Deterministic for a given input, so a re-run writes the same objects.
 */
export async function computeImport(
  deps: { store: ObjectStore; log: Logger },
  input: ImportInput,
  progress: Progress = noProgress,
): Promise<ImportOutput> {
  const { store } = deps;
  const { body, datasetId } = input;
  const started = performance.now();
  // Staged files are read from a local copy; the dataset records the original source.
  const local = input.staged ? await unstageImport(store, body, input.staged) : undefined;
  let images: ImageSet;
  let embeddings: Awaited<ReturnType<typeof loadEmbeddings>> | undefined;
  try {
    const read = local?.body ?? body;
    images = await loadImages(read, progress);
    embeddings = read.embeddingsPath
      ? await loadEmbeddings(read.embeddingsPath, images.count)
      : undefined;
  } finally {
    await local?.cleanup();
  }
  progress('computing features', 0, 1);
  const features = await computeFeatures(images, {
    seed: FEATURE_SEED,
    ...(embeddings ? { embeddings: { data: embeddings.data, dim: embeddings.dim } } : {}),
    ...(body.pcaComponents ? { pcaComponents: body.pcaComponents } : {}),
  });
  progress('computing features', 1, 1);

  const prefix = datasetPrefix(datasetId);
  // A crashed earlier attempt may have left objects behind.
  await store.deletePrefix(prefix);
  try {
    progress('storing images', 0, 2);
    const imagesBin = encodeShard(images);
    const imagesKey = `${prefix}images.bin`;
    const imagesSha = sha256Hex(imagesBin);
    await store.put(imagesKey, imagesBin, {
      contentType: 'application/octet-stream',
      sha256: imagesSha,
    });
    const featuresKey = `${prefix}features.npy`;
    await store.put(featuresKey, encodeNpy(features.features, [features.n, features.d]), {
      contentType: 'application/octet-stream',
    });
    if (images.sources) {
      await store.put(`${prefix}sources.json`, Buffer.from(JSON.stringify(images.sources)), {
        contentType: 'application/json',
      });
    }
    progress('storing images', 2, 2);
    const importMs = performance.now() - started;
    let clusteringWrite: ClusteringWrite | undefined;
    if (body.cluster) {
      const clusteringId = input.clusteringId ?? newId('clustering');
      clusteringWrite = await clusterAndWrite(
        deps,
        datasetId,
        clusteringId,
        images,
        features,
        clusterParams(body.cluster),
        progress,
      );
    }
    return {
      dataset: {
        id: datasetId,
        name: body.name,
        source: body.source,
        count: images.count,
        height: images.height,
        width: images.width,
        channels: images.channels,
        classNames: images.classNames,
        imagesKey,
        bytes: imagesBin.length,
        sha256: imagesSha,
        featureKind: features.kind,
        featureDim: features.d,
        featuresKey,
        importMs,
      },
      ...(clusteringWrite ? { clustering: clusteringWrite } : {}),
    };
  } catch (err) {
    await store
      .deletePrefix(prefix)
      .catch((cleanupErr) =>
        deps.log.error({ err: cleanupErr, prefix }, 'could not delete a failed import'),
      );
    throw err;
  }
}

/** Record an import (its dataset row, event and clustering) in `tx`; a dataset already there is kept. */
export function applyImport(tx: Tx, output: ImportOutput): ImportResult {
  const d = output.dataset;
  const result: ImportResult = {
    datasetId: d.id,
    ...(output.clustering ? { clusteringId: output.clustering.clustering.id! } : {}),
  };
  if (tx.select().from(datasets).where(eq(datasets.id, d.id)).get()) return result;
  tx.insert(datasets).values(d).run();
  recordEvent(tx, EVENTS.datasetImported, {
    datasetId: d.id,
    data: { name: d.name, count: d.count, featureKind: d.featureKind, importMs: d.importMs },
  });
  if (output.clustering) insertClustering(tx, output.clustering);
  return result;
}

/**
 * Import a dataset ({@link computeImport}, then {@link applyImport} in one transaction).
 * Idempotent for a given `datasetId`, so a job re-run after a crash finishes the same import.
 */
export async function importDataset(
  deps: DatasetDeps,
  body: ImportDatasetBody,
  ids: { datasetId: string; clusteringId?: string },
  progress: Progress = noProgress,
): Promise<ImportResult> {
  const done = importDone(deps.db, ids);
  if (done) return done;
  const output = await computeImport(deps, { body, ...ids }, progress);
  return deps.db.transaction((tx) => applyImport(tx, output));
}

function clusterParams(body: ClusterBody): ClusteringParams {
  return {
    k: body.k,
    assignment: body.assignment ?? 'semantic',
    fineK: body.fineK,
    seed: body.seed ?? 0,
    valFraction: body.valFraction ?? 0.02,
  };
}

export interface ClusterPayload extends ClusterBody {
  datasetId: string;
  clusteringId: string;
  runId?: string;
}

/** What clustering a stored dataset needs from the database. */
export interface ClusterInput {
  payload: ClusterPayload;
  dataset: Pick<
    DatasetRow,
    'id' | 'imagesKey' | 'sha256' | 'classNames' | 'featuresKey' | 'featureKind'
  >;
}

/** Bind the clustering's run (if it waits for it) to the new shards. */
export function bindClusteringRun(tx: Tx, payload: ClusterPayload): void {
  if (!payload.runId) return;
  const run = tx.select().from(runs).where(eq(runs.id, payload.runId)).get();
  if (run && run.status === 'clustering') bindRunToClustering(tx, run.id, payload.clusteringId);
}

/**
 * The database half before clustering: a clustering already there (a re-run) is done, with
 * nothing to compute; a missing dataset or too few images fail for good.
 */
export function prepareCluster(
  db: Db,
  payload: ClusterPayload,
): { done: true } | { done: false; input: ClusterInput } {
  if (db.select().from(clusterings).where(eq(clusterings.id, payload.clusteringId)).get())
    return { done: true };
  const dataset = db.select().from(datasets).where(eq(datasets.id, payload.datasetId)).get();
  if (!dataset)
    throw new PermanentJobError(`dataset ${payload.datasetId} does not exist`, 'not_found');
  if (payload.k > dataset.count) {
    throw new PermanentJobError(
      `${payload.k} clusters need at least ${payload.k} images; dataset ${dataset.id} has ${dataset.count}`,
      'too_small',
    );
  }
  const { id, imagesKey, sha256, classNames, featuresKey, featureKind } = dataset;
  return {
    done: false,
    input: { payload, dataset: { id, imagesKey, sha256, classNames, featuresKey, featureKind } },
  };
}

/** The store half of clustering: shards and preview written, the rows returned (plain JSON). */
export async function computeCluster(
  deps: { store: ObjectStore; log: Logger },
  { payload, dataset }: ClusterInput,
  progress: Progress = noProgress,
): Promise<ClusteringWrite> {
  const { store } = deps;
  progress('loading dataset', 0, 2);
  const imagesBin = await store.getBytes(dataset.imagesKey);
  if (sha256Hex(imagesBin) !== dataset.sha256) {
    throw new PermanentJobError(
      `stored images of dataset ${dataset.id} (${dataset.imagesKey}) fail their sha256 check`,
      'corrupt_object',
    );
  }
  const images = decodeShard(imagesBin, {
    classNames: dataset.classNames,
    file: dataset.imagesKey,
  });
  const npy = parseNpy(await store.getBytes(dataset.featuresKey), dataset.featuresKey);
  progress('loading dataset', 2, 2);
  const [n, d] = npy.shape as [number, number];
  const features = {
    features: new Float32Array(
      npy.data.buffer.slice(npy.data.byteOffset, npy.data.byteOffset + npy.data.byteLength),
    ),
    n,
    d,
    kind: dataset.featureKind,
  };
  const prefix = clusteringPrefix(dataset.id, payload.clusteringId);
  await store.deletePrefix(prefix);
  try {
    return await clusterAndWrite(
      deps,
      dataset.id,
      payload.clusteringId,
      images,
      features,
      clusterParams(payload),
      progress,
    );
  } catch (err) {
    await store.deletePrefix(prefix).catch(() => {});
    throw err;
  }
}

/** Record a clustering (unless already there) and bind its run, in `tx`. */
export function applyCluster(tx: Tx, payload: ClusterPayload, write: ClusteringWrite): void {
  if (!tx.select().from(clusterings).where(eq(clusterings.id, write.clustering.id!)).get())
    insertClustering(tx, write);
  bindClusteringRun(tx, payload);
}

/**
 * Cluster an imported dataset from its stored images and features. Idempotent for a given
 * clustering id; when the clustering belongs to a run, the run's experts are bound to the new
 * shards in the same transaction.
 */
export async function clusterStoredDataset(
  deps: DatasetDeps,
  payload: ClusterPayload,
  progress: Progress = noProgress,
): Promise<{ clusteringId: string }> {
  const { db } = deps;
  const prepared = prepareCluster(db, payload);
  if (prepared.done) {
    db.transaction((tx) => bindClusteringRun(tx, payload));
    return { clusteringId: payload.clusteringId };
  }
  const write = await computeCluster(deps, prepared.input, progress);
  db.transaction((tx) => applyCluster(tx, payload, write));
  return { clusteringId: payload.clusteringId };
}

function toClustering(row: ClusteringRow, shardRows: ShardRow[]): Clustering {
  return {
    id: row.id,
    datasetId: row.datasetId,
    k: row.k,
    assignment: row.assignment,
    fineK: row.fineK,
    seed: row.seed,
    valFraction: row.valFraction,
    featureKind: row.featureKind,
    sizes: row.sizes,
    inertia: row.inertia,
    fineInertia: row.fineInertia,
    durationMs: row.durationMs,
    previewUrl: `/api/v1/datasets/${row.datasetId}/clusterings/${row.id}/preview.png`,
    createdAt: row.createdAt.toISOString(),
    shards: shardRows
      .filter((s) => s.clusteringId === row.id)
      .sort((a, b) => a.cluster - b.cluster || a.split.localeCompare(b.split))
      .map((s) => ({
        id: s.id,
        cluster: s.cluster,
        split: s.split,
        count: s.count,
        bytes: s.bytes,
        sha256: s.sha256,
        key: s.key,
        classCounts: s.classCounts,
      })),
  };
}

function toDataset(db: Db, row: DatasetRow): Dataset {
  const cs = db
    .select()
    .from(clusterings)
    .where(eq(clusterings.datasetId, row.id))
    .orderBy(asc(clusterings.createdAt))
    .all();
  const shardRows = cs.length
    ? cs.flatMap((c) => db.select().from(shards).where(eq(shards.clusteringId, c.id)).all())
    : [];
  return {
    id: row.id,
    name: row.name,
    source: row.source,
    count: row.count,
    height: row.height,
    width: row.width,
    channels: row.channels,
    classNames: row.classNames,
    featureKind: row.featureKind,
    featureDim: row.featureDim,
    bytes: row.bytes,
    sha256: row.sha256,
    importMs: row.importMs,
    createdAt: row.createdAt.toISOString(),
    clusterings: cs.map((c) => toClustering(c, shardRows)),
  };
}

export function getDataset(db: Db, id: string): Dataset {
  const row = db.select().from(datasets).where(eq(datasets.id, id)).get();
  if (!row) throw notFound('dataset', id);
  return toDataset(db, row);
}

export function listDatasets(db: Db, limit = 100): Dataset[] {
  return db
    .select()
    .from(datasets)
    .orderBy(desc(datasets.createdAt))
    .limit(limit)
    .all()
    .map((r) => toDataset(db, r));
}

export function getClustering(db: Db, datasetId: string, clusteringId: string): Clustering {
  const row = db.select().from(clusterings).where(eq(clusterings.id, clusteringId)).get();
  if (!row || row.datasetId !== datasetId)
    throw notFound(`clustering of dataset ${datasetId}:`, clusteringId);
  return toClustering(row, db.select().from(shards).where(eq(shards.clusteringId, row.id)).all());
}
