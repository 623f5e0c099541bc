import type { Run } from '@archipelago/protocol';
import { and, eq, inArray } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import { experts, type LeaseRow, leases, runs } from '../db/schema/index.js';
import { DomainError, notFound } from '../errors.js';
import { EVENTS } from '../lifecycle/events.js';
import { TERMINAL_RUN_STATUSES, transitionRun } from '../lifecycle/run-lifecycle.js';
import { endLease } from './leases.js';
import { getRun } from './runs.js';

/**
 * Cancel a run: status `cancelled`, every active lease of its experts revoked (their experts go
 * back to `pending` at their last accepted checkpoint, and are never leased again because only
 * training runs are), one event per revoked lease and one for the run, all in one transaction.
 * Workers learn at their next heartbeat, which the coordinator answers with `lease_expired`.
 *
 * Cancelling a cancelled run again is a no-op.
 *
 * @returns the run and the revoked leases (so connected workers can be told at once).
 * @throws {DomainError} `not_found` for an unknown run, `run_finished` for a run that is
 *   published or failed.
 */
export function cancelRun(
  db: Db,
  runId: string,
  reason = 'run cancelled by an organiser',
): { run: Run; revoked: LeaseRow[] } {
  const revoked = db.transaction((tx) => {
    const run = tx.select().from(runs).where(eq(runs.id, runId)).get();
    if (!run) throw notFound('run', runId);
    if (run.status === 'cancelled') return [];
    if (TERMINAL_RUN_STATUSES.includes(run.status))
      throw new DomainError('run_finished', `run ${runId} is already ${run.status}`);
    const runExperts = tx.select().from(experts).where(eq(experts.runId, runId)).all();
    const active = runExperts.length
      ? tx
          .select()
          .from(leases)
          .where(
            and(
              eq(leases.status, 'active'),
              inArray(
                leases.expertId,
                runExperts.map((e) => e.id),
              ),
            ),
          )
          .all()
      : [];
    for (const lease of active) endLease(tx, lease, 'revoked', reason);
    transitionRun(tx, runId, EVENTS.runCancelled, {
      set: { finishedAt: new Date() },
      data: { reason, previousStatus: run.status, revokedLeases: active.length },
    });
    return active;
  });
  return { run: getRun(db, runId), revoked };
}
