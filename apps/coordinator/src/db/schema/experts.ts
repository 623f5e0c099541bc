import type { ExpertObjective, ExpertStatus, ObjectiveSpec, Schedule } from '@archipelago/protocol';
import { index, integer, real, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';
import { createdAt, updatedAt } from './columns.js';
import { runs } from './runs.js';
import { shards } from './shards.js';

/** One expert: a cluster's shard plus its objective, trained by whichever worker leases it. */
export const experts = sqliteTable(
  'experts',
  {
    id: text('id').primaryKey(),
    runId: text('run_id')
      .notNull()
      .references(() => runs.id, { onDelete: 'cascade' }),
    cluster: integer('cluster').notNull(),
    /** The objective family (`any` until first leased), a summary of `spec`. */
    objective: text('objective').$type<ExpertObjective>().notNull(),
    /** Summary of `spec`: the DDPM noise schedule's kind; null for flow matching. */
    schedule: text('schedule').$type<Schedule>(),
    /**
     * The objective spec in canonical form (docs/method.md §3), stored verbatim and sent in every
     * lease grant; null until an `any` expert is first leased.
     */
    spec: text('spec', { mode: 'json' }).$type<ObjectiveSpec>(),
    status: text('status').$type<ExpertStatus>().notNull(),
    trainShardId: text('train_shard_id').references(() => shards.id),
    valShardId: text('val_shard_id').references(() => shards.id),
    targetSteps: integer('target_steps').notNull(),
    step: integer('step').notNull().default(0),
    loss: real('loss'),
    imagesPerSec: real('images_per_sec'),
    workerId: text('worker_id'),
    lastHeartbeatAt: integer('last_heartbeat_at', { mode: 'timestamp_ms' }),
    /** Last accepted checkpoint: the resume point when a lease ends early. */
    checkpointId: text('checkpoint_id'),
    checkpointStep: integer('checkpoint_step'),
    validationLoss: real('validation_loss'),
    /** Loss of an untrained (zero-output) network on the same held-out batch. */
    validationBaseline: real('validation_baseline'),
    /** Why validation last rejected a final checkpoint (null once one passes). */
    validationError: text('validation_error'),
    /**
     * The acceptance test's measurements of the last validated final checkpoint (docs/method.md
     * §12): x0 error over the shard's linear reference at mid and at high noise, and specificity
     * (the lowest reference-normalised error on another shard over the one on its own).
     */
    acceptanceMidRatio: real('acceptance_mid_ratio'),
    acceptanceHighRatio: real('acceptance_high_ratio'),
    acceptanceSpecificity: real('acceptance_specificity'),
    /** Another expert of the run whose checkpoint initialises this one (DDPM -> FM, §7). */
    initFromExpertId: text('init_from_expert_id'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('experts_run_cluster').on(t.runId, t.cluster),
    index('experts_status_idx').on(t.status, t.objective),
  ],
);

export type ExpertRow = typeof experts.$inferSelect;
