import type { ExpertObjective } from '@archipelago/protocol';
import { index, integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { createdAt } from './columns.js';
import { workerTokens } from './worker-tokens.js';

/** A worker daemon's identity; it survives restarts of the worker and re-attaches to its lease. */
export const workers = sqliteTable(
  'workers',
  {
    id: text('id').primaryKey(),
    tokenId: text('token_id')
      .notNull()
      .references(() => workerTokens.id),
    name: text('name').notNull(),
    objective: text('objective').$type<ExpertObjective>().notNull(),
    backend: text('backend'),
    hardware: text('hardware', { mode: 'json' }).$type<Record<string, unknown>>(),
    protocolVersion: integer('protocol_version'),
    online: integer('online', { mode: 'boolean' }).notNull().default(false),
    connectedAt: integer('connected_at', { mode: 'timestamp_ms' }),
    lastSeenAt: integer('last_seen_at', { mode: 'timestamp_ms' }),
    createdAt: createdAt(),
  },
  (t) => [index('workers_token_idx').on(t.tokenId)],
);

export type WorkerRow = typeof workers.$inferSelect;
