import type { DatasetSource } from '@archipelago/protocol';
import { integer, real, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { createdAt } from './columns.js';

/**
 * An imported dataset. The row is written in the same transaction that finishes the import, so
 * a row exists only for a dataset whose objects are all in the store.
 */
export const datasets = sqliteTable('datasets', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  source: text('source', { mode: 'json' }).$type<DatasetSource>().notNull(),
  count: integer('count').notNull(),
  height: integer('height').notNull(),
  width: integer('width').notNull(),
  channels: integer('channels').notNull(),
  classNames: text('class_names', { mode: 'json' }).$type<string[]>().notNull(),
  /** Store key of every image in one shard-format file, in import order. */
  imagesKey: text('images_key').notNull(),
  bytes: integer('bytes').notNull(),
  sha256: text('sha256').notNull(),
  featureKind: text('feature_kind', { enum: ['pca', 'embeddings'] }).notNull(),
  featureDim: integer('feature_dim').notNull(),
  /** Store key of the float32 feature matrix (count x featureDim, .npy). */
  featuresKey: text('features_key').notNull(),
  importMs: real('import_ms').notNull(),
  createdAt: createdAt(),
});

export type DatasetRow = typeof datasets.$inferSelect;
export type NewDatasetRow = typeof datasets.$inferInsert;
