/**
 * Collecting checkpoint objects nobody needs any more, so a run keeps about two per expert while
 * it trains and its finals once it is done:
 *
 * - an expert keeps its current checkpoint (resume point or final candidate), its newest
 *   accepted non-final (what a rejected final falls back to), the newest one that passed its
 *   resume check, every accepted final, and whatever a published manifest of its run names; a done
 *   expert keeps only its finals (and what manifests name). Every other accepted checkpoint
 *   becomes `superseded` and its object is deleted;
 * - an upload never committed whose lease is gone is rejected and its object deleted;
 * - a checkpoint's optimiser state goes with its checkpoint;
 * - an object under `uploads/` that no open upload owns (a replayed S3 URL, a crash between copy
 *   and delete) is deleted.
 */
import type { ObjectStore } from '@archipelago/storage';
import { and, desc, eq, inArray, lt, ne, or, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import { type CheckpointRow, checkpoints, ensembles, experts, leases } from '../db/schema/index.js';
import { manifestFiles } from '../ensembles/manifest.js';
import { deleteCheckpointObject, uploadCheckpointId } from './checkpoint-objects.js';
import { readManifest } from './ensembles.js';

export interface GcDeps {
  db: Db;
  store: ObjectStore;
  log?: Logger;
}

/** Keys the published manifests of a run name. */
async function namedByManifests(deps: GcDeps, runId: string): Promise<Set<string>> {
  const named = new Set<string>();
  const rows = deps.db
    .select({ id: ensembles.id })
    .from(ensembles)
    .where(eq(ensembles.runId, runId))
    .all();
  for (const { id } of rows) {
    const { manifest } = await readManifest(deps.store, id);
    for (const { file } of manifestFiles(manifest)) named.add(file.key);
  }
  return named;
}

/**
 * Supersede the checkpoints of `expertId` it no longer needs and delete their objects; returns
 * how many were superseded.
 */
export async function collectExpertCheckpoints(deps: GcDeps, expertId: string): Promise<number> {
  const { db } = deps;
  const first = db.select().from(experts).where(eq(experts.id, expertId)).get();
  if (!first) return 0;
  // Read before the transaction (it needs the store); manifests only ever name accepted finals.
  const named = await namedByManifests(deps, first.runId);
  const superseded = db.transaction((tx) => {
    const expert = tx.select().from(experts).where(eq(experts.id, expertId)).get()!;
    const accepted = tx
      .select()
      .from(checkpoints)
      .where(and(eq(checkpoints.expertId, expertId), eq(checkpoints.status, 'accepted')))
      .orderBy(desc(checkpoints.step))
      .all();
    const keep = new Set<string>();
    for (const c of accepted) if (c.final || named.has(c.key)) keep.add(c.id);
    if (expert.status !== 'done') {
      if (expert.checkpointId) keep.add(expert.checkpointId);
      const nonFinal = accepted.filter((c) => !c.final);
      if (nonFinal[0]) keep.add(nonFinal[0].id);
      const checked = nonFinal.find((c) => c.resumeCheckedAt !== null);
      if (checked) keep.add(checked.id);
    }
    const gone = accepted.filter((c) => !keep.has(c.id));
    if (gone.length === 0) return [];
    const newest = accepted[0]!.step;
    tx.update(checkpoints)
      .set({
        status: 'superseded',
        reason: `superseded: the expert has moved on to step ${newest}`,
      })
      .where(
        and(
          inArray(
            checkpoints.id,
            gone.map((c) => c.id),
          ),
          eq(checkpoints.status, 'accepted'),
        ),
      )
      .run();
    return gone;
  });
  await deleteObjects(deps, superseded);
  await deleteUnnamed(deps, first.runId, first.cluster);
  return superseded.length;
}

/** Objects left under an expert's prefix by a crash between a copy and its commit, after this long. */
const UNNAMED_GRACE_MS = 60 * 60 * 1000;

/** Delete what lies under the expert's prefix, long enough, that no live checkpoint names. */
async function deleteUnnamed(deps: GcDeps, runId: string, cluster: number): Promise<void> {
  const { db, store } = deps;
  const before = Date.now() - UNNAMED_GRACE_MS;
  for await (const { key, lastModified } of store.list(`runs/${runId}/experts/${cluster}/`)) {
    if (lastModified.getTime() > before) continue;
    const named = db
      .select({ id: checkpoints.id })
      .from(checkpoints)
      .where(
        and(
          or(eq(checkpoints.key, key), eq(checkpoints.optimizerKey, key)),
          inArray(checkpoints.status, ['accepted', 'uploading']),
        ),
      )
      .get();
    if (!named) await store.delete(key);
  }
}

async function deleteObjects(deps: GcDeps, rows: CheckpointRow[]): Promise<void> {
  for (const row of rows) {
    await deleteCheckpointObject(deps.db, deps.store, row).catch((err: unknown) =>
      deps.log?.warn({ err, key: row.key }, 'could not delete a checkpoint object'),
    );
  }
}

/**
 * Reject the uploads whose lease ended (or expired) before they were committed, and delete every
 * object under `uploads/` that no open upload owns. Returns how many objects it deleted.
 */
export async function collectStaleUploads(deps: GcDeps, now = new Date()): Promise<number> {
  const { db, store } = deps;
  const stale = db.transaction((tx) => {
    const rows = tx
      .select({ checkpoint: checkpoints })
      .from(checkpoints)
      .innerJoin(leases, eq(leases.id, checkpoints.leaseId))
      .where(
        and(
          eq(checkpoints.status, 'uploading'),
          or(ne(leases.status, 'active'), lt(leases.expiresAt, now)),
        ),
      )
      .all()
      .map((r) => r.checkpoint);
    if (rows.length === 0) return [];
    tx.update(checkpoints)
      .set({
        status: 'rejected',
        reason: 'abandoned: its lease ended before it was committed',
        decidedAt: now,
      })
      .where(
        and(
          inArray(
            checkpoints.id,
            rows.map((r) => r.id),
          ),
          eq(checkpoints.status, 'uploading'),
        ),
      )
      .run();
    return rows;
  });
  await deleteObjects(deps, stale);
  let deleted = 0;
  const orphans: string[] = [];
  for await (const { key } of store.list('uploads/')) {
    const id = uploadCheckpointId(key);
    const open =
      id !== null &&
      db
        .select({ id: checkpoints.id })
        .from(checkpoints)
        .where(and(eq(checkpoints.id, id), eq(checkpoints.status, 'uploading')))
        .get();
    if (!open) orphans.push(key);
  }
  for (const key of orphans) {
    await store.delete(key);
    deleted++;
  }
  return deleted;
}

/**
 * Everything above, for the whole database: stale uploads and stray upload objects, then every
 * expert with more than one accepted checkpoint (a done expert lets its non-finals go).
 */
export async function collectCheckpoints(deps: GcDeps): Promise<void> {
  await collectStaleUploads(deps);
  const crowded = deps.db
    .select({ expertId: checkpoints.expertId })
    .from(checkpoints)
    .where(eq(checkpoints.status, 'accepted'))
    .groupBy(checkpoints.expertId)
    .having(sql`count(*) > 1`)
    .all();
  for (const { expertId } of crowded) await collectExpertCheckpoints(deps, expertId);
}
