import { index, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { createdAt } from './columns.js';
import { runs } from './runs.js';

/** A published, immutable ensemble: its id is the sha256 of its canonical manifest. */
export const ensembles = sqliteTable(
  'ensembles',
  {
    id: text('id').primaryKey(),
    runId: text('run_id')
      .notNull()
      .references(() => runs.id),
    manifestKey: text('manifest_key').notNull(),
    manifestSha256: text('manifest_sha256').notNull(),
    routerKey: text('router_key').notNull(),
    routerSha256: text('router_sha256').notNull(),
    routerId: text('router_id'),
    /** Ed25519 signature (base64) over the canonical manifest, and the signing key's id. */
    signature: text('signature').notNull(),
    keyId: text('key_id').notNull(),
    defaults: text('defaults', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('ensembles_run_idx').on(t.runId, t.createdAt)],
);

export type EnsembleRow = typeof ensembles.$inferSelect;
