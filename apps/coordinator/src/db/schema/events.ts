import { index, integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';

/**
 * Append-only event log. Every state transition writes one row in the same transaction, so
 * the dashboard and audits can replay what happened.
 */
export const events = sqliteTable(
  'events',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    at: integer('at', { mode: 'timestamp_ms' })
      .notNull()
      .$defaultFn(() => new Date()),
    type: text('type').notNull(),
    datasetId: text('dataset_id'),
    runId: text('run_id'),
    expertId: text('expert_id'),
    workerId: text('worker_id'),
    data: text('data', { mode: 'json' }).$type<Record<string, unknown>>(),
  },
  (t) => [index('events_run_idx').on(t.runId, t.id), index('events_type_idx').on(t.type)],
);

export type EventRow = typeof events.$inferSelect;
