/**
 * The heartbeat path at wire speed (docs/architecture.md "Leases"): a heartbeat is checked
 * against the lease's row (one prepared select), acknowledged at once, and its renewal and
 * progress kept in memory until the next flush writes every pending one in a single transaction.
 *
 * What holds:
 * - An ack promises `expiresAt = now + TTL`; a flush writes exactly that promise (never later:
 *   `max` with the stored deadline only keeps a later one already there), and only onto a lease
 *   that is still active, so a flush never revives or extends a lease past what its acks said.
 * - Whoever decides expiry or reads a lease's deadline in this process flushes first (the sweep,
 *   every other worker message): expiry is decided on the acknowledged renewal times, within one
 *   sweep of the TTL, as before.
 * - A crash loses at most one flush interval of renewals and progress: the stored deadlines are
 *   then earlier than the promised ones, so a restarted coordinator may end a lease early, never
 *   keep one alive that should have expired.
 * - State changes are not batched: the first heartbeat of a lease (leased -> training, with its
 *   event row) is written at once by {@link heartbeat}; every other transition goes through its
 *   own transaction elsewhere, as before.
 */
import type Sqlite from 'better-sqlite3';
import type { Db } from '../db/database.js';
import { heartbeat as heartbeatNow, LeaseError } from './leases.js';

export interface HeartbeatMessage {
  leaseId: string;
  step: number;
  loss: number | null;
  imagesPerSec: number;
}

/** A lease's renewal and progress acknowledged but not yet written. */
interface PendingRenewal {
  leaseId: string;
  expertId: string;
  /** The deadline the last ack promised (ms). */
  expiresAt: number;
  step: number;
  /** The last finite loss reported (null: keep the stored one). */
  loss: number | null;
  imagesPerSec: number;
  at: number;
}

/** What a heartbeat is checked against: its lease's row and its expert's. */
interface LeaseCheck {
  status: string;
  workerId: string;
  expiresAt: number;
  startStep: number;
  expertId: string;
  runId: string;
  expertStatus: string;
  targetSteps: number;
  step: number;
}

/** Curve points written per insert statement. */
const METRIC_BLOCK = 64;

type Metric = [
  expertId: string,
  runId: string,
  step: number,
  loss: number,
  ips: number,
  at: number,
];

export class LeaseRenewals {
  private pending = new Map<string, PendingRenewal>();
  private metrics: Metric[] = [];
  private seen = new Map<string, number>();
  private readonly check: Sqlite.Statement<[string], LeaseCheck>;
  private readonly write: (
    pending: PendingRenewal[],
    metrics: Metric[],
    seen: [string, number][],
  ) => void;

  constructor(
    private readonly db: Db,
    private readonly ttlMs: number,
  ) {
    const c = db.$client;
    this.check = c.prepare(
      `select l.status, l.worker_id as workerId, l.expires_at as expiresAt,
         l.start_step as startStep, l.expert_id as expertId, e.run_id as runId,
         e.status as expertStatus, e.target_steps as targetSteps, e.step
       from leases l join experts e on e.id = l.expert_id where l.id = ?`,
    );
    const renew = c.prepare(
      `update leases set expires_at = max(expires_at, ?), last_step = ?
       where id = ? and status = 'active'`,
    );
    const progress = c.prepare(
      `update experts set step = ?, loss = coalesce(?, loss), images_per_sec = ?,
         last_heartbeat_at = ?, updated_at = ? where id = ?`,
    );
    const insertMetrics = (rows: number) =>
      c.prepare(
        `insert into expert_metrics (expert_id, run_id, step, loss, images_per_sec, at) values ${Array(
          rows,
        )
          .fill('(?, ?, ?, ?, ?, ?)')
          .join(', ')}`,
      );
    const metricBlock = insertMetrics(METRIC_BLOCK);
    const metricOne = insertMetrics(1);
    const expertExists = c.prepare('select 1 from experts where id = ?').pluck();
    const seen = c.prepare(
      'update workers set last_seen_at = max(coalesce(last_seen_at, 0), ?) where id = ?',
    );
    this.write = c.transaction((pending, metrics, seenAt) => {
      for (const p of pending) {
        // An ended lease (released, expired, revoked, completed meanwhile) keeps its row as is.
        if (renew.run(p.expiresAt, p.step, p.leaseId).changes > 0)
          progress.run(p.step, p.loss, p.imagesPerSec, p.at, p.at, p.expertId);
      }
      // The training curve: points acknowledged while their lease was active (of experts that
      // still exist), in blocks of rows per statement.
      const exists = new Map<string, boolean>();
      const kept = metrics.filter((m: Metric) => {
        let e = exists.get(m[0]);
        if (e === undefined) {
          e = expertExists.get(m[0]) !== undefined;
          exists.set(m[0], e);
        }
        return e;
      });
      let i = 0;
      for (; i + METRIC_BLOCK <= kept.length; i += METRIC_BLOCK)
        metricBlock.run(kept.slice(i, i + METRIC_BLOCK).flat());
      for (; i < kept.length; i++) metricOne.run(kept[i]!);
      for (const [workerId, at] of seenAt) seen.run(at, workerId);
    });
  }

  /** Renewals, curve points and sightings not yet written. */
  get backlog(): number {
    return this.pending.size + this.metrics.length + this.seen.size;
  }

  /**
   * Check a heartbeat and renew its lease in memory; the deadline acknowledged. Refuses exactly
   * as {@link heartbeatNow} does (unknown_lease, lease_expired, invalid_message).
   */
  heartbeat(workerId: string, hb: HeartbeatMessage): Date {
    const row = this.check.get(hb.leaseId);
    if (!row || row.workerId !== workerId)
      throw new LeaseError('unknown_lease', `lease ${hb.leaseId} is not held by this worker`);
    if (row.status !== 'active')
      throw new LeaseError(
        'lease_expired',
        `lease ${hb.leaseId} is ${row.status}; request a new one`,
      );
    const pending = this.pending.get(hb.leaseId);
    const deadline = Math.max(row.expiresAt, pending?.expiresAt ?? 0);
    if (deadline < Date.now())
      throw new LeaseError(
        'lease_expired',
        `lease ${hb.leaseId} expired at ${new Date(deadline).toISOString()}`,
      );
    // The lease's first heartbeat moves its expert to training: a state change, written now.
    if (row.expertStatus === 'leased') return heartbeatNow(this.db, this.ttlMs, workerId, hb);
    if (hb.step < row.startStep || hb.step > row.targetSteps) {
      throw new LeaseError(
        'invalid_message',
        `heartbeat step ${hb.step} is outside this lease's range [${row.startStep}, ${row.targetSteps}]`,
      );
    }
    const now = Date.now();
    const expiresAt = now + this.ttlMs;
    const finite = hb.loss !== null && Number.isFinite(hb.loss);
    // One curve point per heartbeat that moved the step on.
    if (finite && hb.step !== (pending?.step ?? row.step))
      this.metrics.push([row.expertId, row.runId, hb.step, hb.loss!, hb.imagesPerSec, now]);
    if (pending) {
      pending.expiresAt = expiresAt;
      pending.step = hb.step;
      if (finite) pending.loss = hb.loss;
      pending.imagesPerSec = hb.imagesPerSec;
      pending.at = now;
    } else {
      this.pending.set(hb.leaseId, {
        leaseId: hb.leaseId,
        expertId: row.expertId,
        expiresAt,
        step: hb.step,
        loss: finite ? hb.loss : null,
        imagesPerSec: hb.imagesPerSec,
        at: now,
      });
    }
    return new Date(expiresAt);
  }

  /** A frame from this worker arrived now: its `last_seen_at`, written at the next flush. */
  sawWorker(workerId: string, at = Date.now()): void {
    this.seen.set(workerId, at);
  }

  /** The worker's sighting is written by someone else now (its connection closed). */
  forgetWorker(workerId: string): void {
    this.seen.delete(workerId);
  }

  /**
   * Write every pending renewal, curve point and sighting in one transaction; the number written.
   * On failure (the database busy past its timeout) they stay pending, newer ones winning.
   */
  flush(): number {
    const n = this.backlog;
    if (n === 0) return 0;
    const pending = this.pending;
    const metrics = this.metrics;
    const seen = this.seen;
    this.pending = new Map();
    this.metrics = [];
    this.seen = new Map();
    try {
      this.write([...pending.values()], metrics, [...seen]);
    } catch (err) {
      for (const [id, p] of pending) if (!this.pending.has(id)) this.pending.set(id, p);
      this.metrics = metrics.concat(this.metrics);
      for (const [id, at] of seen) if (!this.seen.has(id)) this.seen.set(id, at);
      throw err;
    }
    return n;
  }
}
