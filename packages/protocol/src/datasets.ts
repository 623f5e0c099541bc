import { type Static, Type } from 'typebox';
import { Id, Timestamp } from './common.js';

export const BUILTIN_DATASET_NAMES = ['mnist'] as const;

export const DatasetSource = Type.Union(
  [
    Type.Object(
      {
        kind: Type.Literal('builtin'),
        name: Type.Enum(BUILTIN_DATASET_NAMES),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        kind: Type.Literal('folder'),
        path: Type.String({
          minLength: 1,
          maxLength: 4096,
          description: 'A folder on the coordinator machine holding PNG/JPEG images.',
        }),
        labelsFromSubfolders: Type.Optional(
          Type.Boolean({ description: 'Default: true when the folder holds only sub-folders.' }),
        ),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'Where the images come from.' },
);
export type DatasetSource = Static<typeof DatasetSource>;

/**
 * How images are assigned to the K shards (docs/method.md §8): `semantic`, by the two-level
 * k-means; `random`, at random with exactly the sizes the semantic clustering of the same data,
 * K and seed gives (the baseline that isolates the assignment).
 */
export const CLUSTER_ASSIGNMENTS = ['semantic', 'random'] as const;
export const ClusterAssignment = Type.Enum(CLUSTER_ASSIGNMENTS, {
  default: 'semantic',
  description:
    '`semantic`: two-level k-means; `random`: random shards of the sizes `semantic` gives (a baseline).',
});
export type ClusterAssignment = Static<typeof ClusterAssignment>;

/** Parameters of the two-level k-means of docs/method.md §8. */
export const ClusterBody = Type.Object(
  {
    k: Type.Integer({ minimum: 1, maximum: 256, description: 'Coarse clusters = experts.' }),
    assignment: Type.Optional(ClusterAssignment),
    fineK: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 4096,
        description: 'Fine centroids; default min(1024, n/10).',
      }),
    ),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1, default: 0 })),
    valFraction: Type.Optional(
      Type.Number({ minimum: 0, maximum: 0.5, default: 0.02, description: 'Held out per shard.' }),
    ),
  },
  { additionalProperties: false, title: 'ClusterBody' },
);
export type ClusterBody = Static<typeof ClusterBody>;

export const ImportDatasetBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    source: DatasetSource,
    resolution: Type.Optional(
      Type.Integer({
        minimum: 8,
        maximum: 512,
        description: 'Square side in pixels; default 28 for mnist, 32 for folders.',
      }),
    ),
    channels: Type.Optional(Type.Union([Type.Literal(1), Type.Literal(3)])),
    embeddingsPath: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 4096,
        description:
          'A .npy file (float32, one row per image in import order) of precomputed features.',
      }),
    ),
    pcaComponents: Type.Optional(Type.Integer({ minimum: 2, maximum: 256, default: 32 })),
    cluster: Type.Optional(ClusterBody),
  },
  { additionalProperties: false, title: 'ImportDatasetBody' },
);
export type ImportDatasetBody = Static<typeof ImportDatasetBody>;

export const ShardSplit = Type.Union([Type.Literal('train'), Type.Literal('val')]);

export const Shard = Type.Object(
  {
    id: Id,
    cluster: Type.Integer(),
    split: ShardSplit,
    count: Type.Integer(),
    bytes: Type.Integer(),
    sha256: Type.String(),
    key: Type.String({ description: 'Object-store key of the .bin file; the index is at .json.' }),
    classCounts: Type.Record(Type.String(), Type.Integer()),
  },
  { title: 'Shard' },
);
export type Shard = Static<typeof Shard>;

export const Clustering = Type.Object(
  {
    id: Id,
    datasetId: Id,
    k: Type.Integer(),
    assignment: Type.Enum(CLUSTER_ASSIGNMENTS),
    fineK: Type.Integer(),
    seed: Type.Integer(),
    valFraction: Type.Number(),
    featureKind: Type.Union([Type.Literal('pca'), Type.Literal('embeddings')]),
    sizes: Type.Array(Type.Integer(), { description: 'Images per cluster (train + val).' }),
    inertia: Type.Number({ description: 'Sum of squared feature distances to coarse centroids.' }),
    fineInertia: Type.Number(),
    durationMs: Type.Number(),
    previewUrl: Type.String({ description: 'PNG grid: one row of examples per cluster.' }),
    createdAt: Timestamp,
    shards: Type.Array(Shard),
  },
  { title: 'Clustering' },
);
export type Clustering = Static<typeof Clustering>;

export const Dataset = Type.Object(
  {
    id: Id,
    name: Type.String(),
    source: DatasetSource,
    count: Type.Integer(),
    height: Type.Integer(),
    width: Type.Integer(),
    channels: Type.Integer(),
    classNames: Type.Array(Type.String()),
    featureKind: Type.Union([Type.Literal('pca'), Type.Literal('embeddings')]),
    featureDim: Type.Integer(),
    bytes: Type.Integer(),
    sha256: Type.String(),
    importMs: Type.Number(),
    createdAt: Timestamp,
    clusterings: Type.Array(Clustering),
  },
  { title: 'Dataset' },
);
export type Dataset = Static<typeof Dataset>;

export const DatasetList = Type.Object({ datasets: Type.Array(Dataset) }, { title: 'DatasetList' });
export type DatasetList = Static<typeof DatasetList>;
