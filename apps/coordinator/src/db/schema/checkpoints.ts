import { index, integer, real, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { createdAt } from './columns.js';
import { experts } from './experts.js';

/**
 * `uploading -> accepted | rejected`, and `accepted -> superseded` once a newer checkpoint made it
 * unneeded and its object was deleted (services/checkpoint-gc.ts).
 */
export const CHECKPOINT_STATUSES = ['uploading', 'accepted', 'rejected', 'superseded'] as const;
export type CheckpointStatus = (typeof CHECKPOINT_STATUSES)[number];

/**
 * A safetensors checkpoint of an expert at a step; only `accepted` ones are resume points. `key`
 * is the upload's own key while it is `uploading` (and of a rejected upload), the content-addressed
 * key once accepted.
 */
export const checkpoints = sqliteTable(
  'checkpoints',
  {
    id: text('id').primaryKey(),
    expertId: text('expert_id')
      .notNull()
      .references(() => experts.id, { onDelete: 'cascade' }),
    leaseId: text('lease_id'),
    step: integer('step').notNull(),
    key: text('key').notNull(),
    sha256: text('sha256').notNull(),
    bytes: integer('bytes').notNull(),
    final: integer('final', { mode: 'boolean' }).notNull().default(false),
    /**
     * The checkpoint's optimiser state (Adam's moments and step, the live weights), when the worker
     * uploaded one: its own object (upload key, then content key, like `key`), size and sha256.
     */
    optimizerKey: text('optimizer_key'),
    optimizerSha256: text('optimizer_sha256'),
    optimizerBytes: integer('optimizer_bytes'),
    status: text('status').$type<CheckpointStatus>().notNull(),
    reason: text('reason'),
    validationLoss: real('validation_loss'),
    /**
     * A non-final checkpoint's check as a resume point (before another worker continues from it):
     * its held-out loss over a zero-output network's on the same draws, and when it passed.
     */
    resumeLossRatio: real('resume_loss_ratio'),
    resumeCheckedAt: integer('resume_checked_at', { mode: 'timestamp_ms' }),
    createdAt: createdAt(),
    decidedAt: integer('decided_at', { mode: 'timestamp_ms' }),
  },
  (t) => [index('checkpoints_expert_idx').on(t.expertId, t.step)],
);

export type CheckpointRow = typeof checkpoints.$inferSelect;
