import { integer, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';
import { createdAt } from './columns.js';

/** Revocable worker credentials. Only a sha256 of the secret is kept. */
export const workerTokens = sqliteTable(
  'worker_tokens',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    tokenHash: text('token_hash').notNull(),
    /** First characters of the token, to tell tokens apart in listings. */
    prefix: text('prefix').notNull(),
    createdAt: createdAt(),
    lastUsedAt: integer('last_used_at', { mode: 'timestamp_ms' }),
    revokedAt: integer('revoked_at', { mode: 'timestamp_ms' }),
  },
  (t) => [uniqueIndex('worker_tokens_hash').on(t.tokenHash)],
);

export type WorkerTokenRow = typeof workerTokens.$inferSelect;
