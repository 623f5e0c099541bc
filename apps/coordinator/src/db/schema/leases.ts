import { sql } from 'drizzle-orm';
import { index, integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';
import { experts } from './experts.js';
import { workers } from './workers.js';

export const LEASE_STATUSES = ['active', 'completed', 'released', 'expired', 'revoked'] as const;
export type LeaseStatus = (typeof LEASE_STATUSES)[number];

/** A worker's time-limited claim on one expert, renewed by heartbeats. */
export const leases = sqliteTable(
  'leases',
  {
    id: text('id').primaryKey(),
    expertId: text('expert_id')
      .notNull()
      .references(() => experts.id, { onDelete: 'cascade' }),
    workerId: text('worker_id')
      .notNull()
      .references(() => workers.id),
    status: text('status').$type<LeaseStatus>().notNull(),
    startStep: integer('start_step').notNull(),
    lastStep: integer('last_step').notNull(),
    grantedAt: integer('granted_at', { mode: 'timestamp_ms' }).notNull(),
    expiresAt: integer('expires_at', { mode: 'timestamp_ms' }).notNull(),
    endedAt: integer('ended_at', { mode: 'timestamp_ms' }),
    /**
     * Since when its worker reports training paused (heartbeats with `paused`), or null while it
     * trains: a paused lease is kept until `paused_at` plus the paused-lease grace, no longer.
     */
    pausedAt: integer('paused_at', { mode: 'timestamp_ms' }),
  },
  (t) => [
    // The database itself guarantees one expert is never leased twice at once.
    uniqueIndex('leases_one_active_per_expert').on(t.expertId).where(sql`${t.status} = 'active'`),
    index('leases_status_expiry_idx').on(t.status, t.expiresAt),
    index('leases_worker_idx').on(t.workerId),
  ],
);

export type LeaseRow = typeof leases.$inferSelect;
