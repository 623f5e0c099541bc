import { index, integer, real, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { experts } from './experts.js';

/** An expert's training curve: one row per heartbeat that advanced its step. */
export const expertMetrics = sqliteTable(
  'expert_metrics',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    expertId: text('expert_id')
      .notNull()
      .references(() => experts.id, { onDelete: 'cascade' }),
    runId: text('run_id').notNull(),
    step: integer('step').notNull(),
    loss: real('loss').notNull(),
    imagesPerSec: real('images_per_sec'),
    at: integer('at', { mode: 'timestamp_ms' })
      .notNull()
      .$defaultFn(() => new Date()),
  },
  (t) => [
    index('expert_metrics_expert_idx').on(t.expertId, t.step),
    index('expert_metrics_run_idx').on(t.runId, t.id),
  ],
);

export type ExpertMetricRow = typeof expertMetrics.$inferSelect;
