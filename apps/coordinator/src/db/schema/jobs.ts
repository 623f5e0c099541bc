import type { JobName, JobProgress, JobStatus } from '@archipelago/protocol';
import { index, integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { createdAt } from './columns.js';

/**
 * Coordinator-side jobs. SQLite is the source of truth whichever queue runs them: after a crash,
 * rows still `queued` or `running` are found here and enqueued again.
 */
export const jobs = sqliteTable(
  'jobs',
  {
    id: text('id').primaryKey(),
    name: text('name').$type<JobName>().notNull(),
    status: text('status').$type<JobStatus>().notNull(),
    payload: text('payload', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
    result: text('result', { mode: 'json' }).$type<Record<string, unknown>>(),
    error: text('error'),
    progress: text('progress', { mode: 'json' }).$type<JobProgress>(),
    attempts: integer('attempts').notNull().default(0),
    maxAttempts: integer('max_attempts').notNull().default(3),
    runId: text('run_id'),
    datasetId: text('dataset_id'),
    createdAt: createdAt(),
    startedAt: integer('started_at', { mode: 'timestamp_ms' }),
    finishedAt: integer('finished_at', { mode: 'timestamp_ms' }),
    /** Renewed every few seconds by the process running the job; a stale one is re-queued. */
    heartbeatAt: integer('heartbeat_at', { mode: 'timestamp_ms' }),
    /** A retry waits until then. */
    runAfter: integer('run_after', { mode: 'timestamp_ms' }),
    /** Which process runs it (host:pid), for the operator. */
    claimedBy: text('claimed_by'),
  },
  (t) => [index('jobs_status_idx').on(t.status, t.createdAt)],
);

export type JobRow = typeof jobs.$inferSelect;
