import { index, integer, real, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { createdAt } from './columns.js';
import { datasets } from './datasets.js';

/**
 * One partition of a dataset into K clusters (docs/method.md §8): by two-level k-means, or at
 * random with the sizes k-means gives.
 */
export const clusterings = sqliteTable(
  'clusterings',
  {
    id: text('id').primaryKey(),
    datasetId: text('dataset_id')
      .notNull()
      .references(() => datasets.id, { onDelete: 'cascade' }),
    k: integer('k').notNull(),
    /** How images were assigned to shards: k-means, or at random with its sizes (§8's baseline). */
    assignment: text('assignment', { enum: ['semantic', 'random'] })
      .notNull()
      .default('semantic'),
    fineK: integer('fine_k').notNull(),
    seed: integer('seed').notNull(),
    valFraction: real('val_fraction').notNull(),
    featureKind: text('feature_kind', { enum: ['pca', 'embeddings'] }).notNull(),
    sizes: text('sizes', { mode: 'json' }).$type<number[]>().notNull(),
    inertia: real('inertia').notNull(),
    fineInertia: real('fine_inertia').notNull(),
    /** Store key of a PNG grid with one row of example images per cluster. */
    previewKey: text('preview_key').notNull(),
    durationMs: real('duration_ms').notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('clusterings_dataset_idx').on(t.datasetId, t.k, t.seed)],
);

export type ClusteringRow = typeof clusterings.$inferSelect;
