import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { createdAt } from './columns.js';
import { ensembles } from './ensembles.js';

export const SCORE_STATUSES = ['pending', 'scored', 'failed', 'disabled'] as const;
export type ScoreStatus = (typeof SCORE_STATUSES)[number];

/**
 * The score of a published ensemble (services/ensemble-scores.ts): `pending` while its
 * `score-ensemble` job runs, `scored` once `score.json` and `score.png` are stored beside the
 * manifest, `failed` with the reason (the ensemble stays published), `disabled` when it was
 * published with `scoreSamples` 0.
 */
export const ensembleScores = sqliteTable('ensemble_scores', {
  ensembleId: text('ensemble_id')
    .primaryKey()
    .references(() => ensembles.id),
  status: text('status').$type<ScoreStatus>().notNull(),
  jobId: text('job_id'),
  samples: integer('samples').notNull(),
  seed: integer('seed').notNull(),
  error: text('error'),
  jsonKey: text('json_key'),
  pngKey: text('png_key'),
  /** The headline numbers (FD-cls, precision, recall, diversity, components), for listings. */
  summary: text('summary', { mode: 'json' }).$type<Record<string, number | null>>(),
  createdAt: createdAt(),
  finishedAt: integer('finished_at', { mode: 'timestamp_ms' }),
});

export type EnsembleScoreRow = typeof ensembleScores.$inferSelect;
