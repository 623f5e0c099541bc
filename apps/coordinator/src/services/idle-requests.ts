/**
 * Idle workers at scale (docs/reliability.md): a worker with nothing to train asks for a lease
 * again every `retryAfterMs` (the heartbeat interval), so 9,000 idle workers at 5 s send 1,800
 * requests/s. Each one flushed the pending heartbeats and ran the lease transaction (the worker's
 * held lease, its token's leases, the candidates), about 2 ms with many workers on one token:
 * idle workers alone saturated the coordinator (measured by the heartbeat bench with
 * `--idle-poll-ms`). When the lease transaction finds nothing for an objective, that answer is
 * remembered until the next state change (the generation counter every state change bumps,
 * lifecycle/events.ts, or another process's commit, {@link invalidate}): while it holds, a
 * request from a worker holding no lease is answered `lease.none` from memory.
 *
 * Why that is exact: what the lease transaction grants from (pending experts with a shard, of a
 * run in training, their donors done) changes only by state changes, each of which bumps the
 * generation; a worker that holds a lease (checked here on the acknowledged deadlines, one
 * prepared select) goes through the transaction as before, so it still gets `lease_held`. A
 * worker whose token is at its lease cap gets `lease.none` instead of `lease_limit` while
 * nothing is pending: either way it gets nothing, and the reason given (nothing pending) is true.
 */

import type { ExpertObjective } from '@archipelago/protocol';
import type Sqlite from 'better-sqlite3';
import type { Db } from '../db/database.js';
import { stateGenerationNow } from '../lifecycle/events.js';

export class IdleRequests {
  /** Objective -> the state generation at which the lease transaction found nothing for it. */
  private nothing = new Map<ExpertObjective, number>();
  private readonly held: Sqlite.Statement<[string], { id: string; expiresAt: number }>;
  /** Requests answered from memory (for the metrics and the tests). */
  answered = 0;

  constructor(
    db: Db,
    /** The deadline acknowledged and not yet written for a lease, if any (lease-renewals.ts). */
    private readonly promised: (leaseId: string) => number | undefined,
  ) {
    this.held = db.$client.prepare(
      `select id, expires_at as expiresAt from leases where worker_id = ? and status = 'active'`,
    );
  }

  /** Whether this worker's request can be answered `lease.none` without the transaction. */
  nothingFor(workerId: string, objective: ExpertObjective): boolean {
    const at = this.nothing.get(objective);
    if (at === undefined) return false;
    if (at !== stateGenerationNow()) {
      this.nothing.delete(objective);
      return false;
    }
    const now = Date.now();
    for (const lease of this.held.all(workerId))
      if (Math.max(lease.expiresAt, this.promised(lease.id) ?? 0) > now) return false;
    this.answered++;
    return true;
  }

  /** The lease transaction found nothing for `objective` at state generation `generation`. */
  remember(objective: ExpertObjective, generation: number): void {
    if (generation === stateGenerationNow()) this.nothing.set(objective, generation);
  }

  /** Another process committed: what was remembered may be stale. */
  invalidate(): void {
    this.nothing.clear();
  }
}
