import type { RunConfig, RunStatus } from '@archipelago/protocol';
import { index, integer, real, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { clusterings } from './clusterings.js';
import { createdAt, updatedAt } from './columns.js';
import { datasets } from './datasets.js';

export const runs = sqliteTable(
  'runs',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    datasetId: text('dataset_id')
      .notNull()
      .references(() => datasets.id),
    /** Null until the run's clustering exists (status `clustering`). */
    clusteringId: text('clustering_id').references(() => clusterings.id),
    status: text('status').$type<RunStatus>().notNull(),
    k: integer('k').notNull(),
    objectives: text('objectives').notNull(),
    fineK: integer('fine_k'),
    valFraction: real('val_fraction'),
    config: text('config', { mode: 'json' }).$type<RunConfig>().notNull(),
    error: text('error'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    startedAt: integer('started_at', { mode: 'timestamp_ms' }),
    finishedAt: integer('finished_at', { mode: 'timestamp_ms' }),
  },
  (t) => [index('runs_status_idx').on(t.status)],
);

export type RunRow = typeof runs.$inferSelect;
