import type { MetricPoint, RunMetrics } from '@archipelago/protocol';
import { asc, eq } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import { expertMetrics, experts, runs } from '../db/schema/index.js';
import { notFound } from '../errors.js';

/** Points per expert a curve is thinned to. */
export const MAX_CURVE_POINTS = 2000;

/**
 * Each expert's training curve, ordered by step. When a lease ended early the expert resumed
 * from its last checkpoint and re-trained some steps: the abandoned tail is dropped, so the curve
 * is the history of the weights the expert has now. Long curves are thinned evenly to at most
 * `maxPoints`, keeping the first and the last point.
 */
export function runMetrics(db: Db, runId: string, maxPoints = MAX_CURVE_POINTS): RunMetrics {
  if (!db.select({ id: runs.id }).from(runs).where(eq(runs.id, runId)).get())
    throw notFound('run', runId);
  const curves = new Map<string, MetricPoint[]>();
  const expertRows = db
    .select({ id: experts.id, cluster: experts.cluster })
    .from(experts)
    .where(eq(experts.runId, runId))
    .orderBy(asc(experts.cluster))
    .all();
  for (const e of expertRows) curves.set(e.id, []);
  const rows = db
    .select()
    .from(expertMetrics)
    .where(eq(expertMetrics.runId, runId))
    .orderBy(asc(expertMetrics.id))
    .all();
  for (const row of rows) {
    const curve = curves.get(row.expertId);
    if (!curve) continue;
    // A restart from a checkpoint: forget the points it re-trains.
    while (curve.length > 0 && curve[curve.length - 1]!.step >= row.step) curve.pop();
    curve.push({
      step: row.step,
      loss: row.loss,
      imagesPerSec: row.imagesPerSec,
      at: row.at.toISOString(),
    });
  }
  return {
    runId,
    experts: expertRows.map((e) => ({
      expertId: e.id,
      cluster: e.cluster,
      points: thin(curves.get(e.id)!, maxPoints),
    })),
  };
}

/** At most `max` points, evenly spaced by index, always with the first and the last. */
export function thin<T>(points: T[], max: number): T[] {
  if (points.length <= max) return points;
  const out: T[] = [];
  const stride = (points.length - 1) / (max - 1);
  for (let i = 0; i < max; i++) out.push(points[Math.round(i * stride)]!);
  return out;
}
