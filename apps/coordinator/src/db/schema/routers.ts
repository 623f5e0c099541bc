import type { RouterAccuracy } from '@archipelago/protocol';
import { index, integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { createdAt } from './columns.js';
import { runs } from './runs.js';

/** A trained router of a run (docs/method.md §5); an ensemble pins one. */
export const routers = sqliteTable(
  'routers',
  {
    id: text('id').primaryKey(),
    runId: text('run_id')
      .notNull()
      .references(() => runs.id, { onDelete: 'cascade' }),
    key: text('key').notNull(),
    sha256: text('sha256').notNull(),
    bytes: integer('bytes').notNull(),
    steps: integer('steps').notNull(),
    architecture: text('architecture', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
    accuracy: text('accuracy', { mode: 'json' }).$type<RouterAccuracy>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('routers_run_idx').on(t.runId, t.createdAt)],
);

export type RouterRow = typeof routers.$inferSelect;
