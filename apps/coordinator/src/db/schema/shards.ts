import { integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';
import { clusterings } from './clusterings.js';
import { createdAt } from './columns.js';

/** One split (train or held-out val) of one cluster, stored as a shard-format object. */
export const shards = sqliteTable(
  'shards',
  {
    id: text('id').primaryKey(),
    clusteringId: text('clustering_id')
      .notNull()
      .references(() => clusterings.id, { onDelete: 'cascade' }),
    cluster: integer('cluster').notNull(),
    split: text('split', { enum: ['train', 'val'] }).notNull(),
    key: text('key').notNull(),
    indexKey: text('index_key').notNull(),
    count: integer('count').notNull(),
    bytes: integer('bytes').notNull(),
    sha256: text('sha256').notNull(),
    classCounts: text('class_counts', { mode: 'json' }).$type<Record<string, number>>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('shards_clustering_cluster_split').on(t.clusteringId, t.cluster, t.split)],
);

export type ShardRow = typeof shards.$inferSelect;
