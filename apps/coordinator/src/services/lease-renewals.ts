/**
 * The heartbeat path at wire speed (docs/architecture.md "Leases"): a heartbeat is checked
 * against the lease's row (one prepared select the first time, then a copy kept in memory while
 * no state changes), acknowledged at once, and its renewal and progress kept in memory until the
 * next flush writes every pending one in a single transaction.
 *
 * What holds:
 * - An ack promises `expiresAt = now + TTL`; a flush writes exactly that promise (never later:
 *   `max` with the stored deadline only keeps a later one already there), and only onto a lease
 *   that is still active, so a flush never revives or extends a lease past what its acks said.
 * - Expiry is decided on the acknowledged renewal times, within one sweep of the TTL, as before:
 *   the sweep ends a lease only when neither its stored deadline nor the one acknowledged and not
 *   yet written ({@link promised}) is in the future, so it need not flush (a whole flush at every
 *   sweep blocked the loop for tens of milliseconds under load). Whoever else reads a lease's
 *   deadline or an expert's step for a decision in this process flushes first (every other worker
 *   message).
 * - A crash loses at most one flush interval of renewals and progress: the stored deadlines are
 *   then earlier than the promised ones, so a restarted coordinator may end a lease early, never
 *   keep one alive that should have expired.
 * - The lease rows a heartbeat is checked against are cached only while nothing changes state:
 *   every state change this process writes bumps a generation counter (lifecycle/events.ts; every
 *   one writes an event row), which empties the cache, and so does a commit by another process
 *   (the hub's `PRAGMA data_version` poll, {@link invalidate}). A flush updates the cached
 *   deadlines to what it wrote. So a heartbeat is refused exactly when a read of the row would
 *   refuse it, another process's revocation being seen within one poll (250 ms).
 * - State changes are not batched: the first heartbeat of a lease (leased -> training, with its
 *   event row) is written at once by {@link heartbeat}; every other transition goes through its
 *   own transaction elsewhere, as before.
 * - The training curve keeps at most one point per lease per flush: the last heartbeat that moved
 *   the step on with a finite loss. Workers heartbeat every few seconds, far less often than the
 *   flush interval, so at their pace that is still one point per heartbeat; a faster sender (the
 *   bench) gets a curve sampled every flush, which the dashboard thins to 2,000 points anyway
 *   (services/run-metrics.ts).
 * - Flushes are due every `flushMs`, checked on each heartbeat as well as by the hub's timer: a
 *   loop saturated with socket reads runs its timers late (up to seconds), and the crash window
 *   must not grow with it. A due flush is written in chunks, each its own transaction holding at
 *   most {@link CHUNK} renewals and sightings and stopping once it has written for
 *   {@link CHUNK_BUDGET_MS} (the cost of a row depends on the machine and on how many pages the
 *   rows touch, so the chunk is bounded by time, not only by count): the loop is never held for
 *   more than about one budget (plus a commit) by a due flush. The next chunk comes after the loop
 *   has read its sockets (the hub's setImmediate) or on a heartbeat at least
 *   {@link CHUNK_GAP_MS} later, so that acks keep flowing in between. A chunk holds a renewal with
 *   its progress and curve point, so a crash between chunks leaves each lease either written up
 *   to its last ack or as of the previous flush: at most one interval lost plus the chunks' own
 *   time, never a deadline past an ack. {@link flush} (the sweep, every other message, a graceful
 *   stop) writes everything left at once.
 * - A paused lease (heartbeats with `paused`) costs nothing more: its pause start rides in the
 *   renewal and the cached row, written with the deadline by the same update. Its acks promise
 *   `pausedAt + pausedGraceMs` (the same value every time, at least `now + TTL`), so it survives
 *   its worker's silence until then and no heartbeat extends it past that; the sweep needs no
 *   rule of its own. The first unpaused heartbeat ends the pause: its `now + TTL` is written as
 *   is, replacing the longer paused deadline, so a worker that dies after resuming loses its lease
 *   within the TTL again.
 */
import type Sqlite from 'better-sqlite3';
import type { Db } from '../db/database.js';
import { stateGenerationNow } from '../lifecycle/events.js';
import { heartbeat as heartbeatNow, LeaseError } from './leases.js';

export interface HeartbeatMessage {
  leaseId: string;
  step: number;
  loss: number | null;
  imagesPerSec: number;
  /** Training is paused (the volunteer's pause); absent or false: training. */
  paused?: boolean;
}

/** A curve point: expert, run, step, loss, images/s, at (ms). */
type Metric = [
  expertId: string,
  runId: string,
  step: number,
  loss: number,
  ips: number,
  at: number,
];

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
  /** The curve point of the last heartbeat that moved the step on (null: none since the write). */
  point: Metric | null;
  /** Since when the lease is paused (ms), or null: training. */
  pausedAt: number | null;
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
  /** Since when the lease is paused (ms), as last read or written, or null. */
  pausedAt: number | null;
}

/** What a chunk took from the pending maps (put back if its transaction fails). */
interface Taken {
  pending: [string, PendingRenewal][];
  seen: [string, number][];
}

/** Cached lease rows at most; past it the cache starts again (misses are never cached). */
const MAX_CACHED = 100_000;

/** Renewals (and, separately, sightings) written per transaction by a due flush. */
export const CHUNK = 256;

/** The least time between two chunks of a due flush. */
export const CHUNK_GAP_MS = 5;

/** A chunk of a due flush stops writing rows once it has written for this long (ms). */
export const CHUNK_BUDGET_MS = 2;

/**
 * An idle worker's sighting (`last_seen_at`, shown in the workers list) from its lease requests is
 * written at most this often while it stays connected (its first after a hello, every frame of a
 * worker that trains, and its disconnection, at once): each lease request would otherwise rewrite
 * its row at each flush, scattered over the table's pages (measured: the flush took 14 % of a core
 * beside 1,790 idle requests/s).
 */
export const SIGHTING_MS = 30_000;

/** Rows written between two looks at the clock while a chunk writes. */
const ROWS_PER_CLOCK = 16;

export class LeaseRenewals {
  private pending = new Map<string, PendingRenewal>();
  private seen = new Map<string, number>();
  /** When each connected worker's sighting was last written (ms). */
  private sightingWritten = new Map<string, number>();
  private lastFlushAt = Date.now();
  /** Entries (renewals plus sightings) the due flush under way has still to write. */
  private drainLeft = 0;
  private lastChunkAt = 0;
  /** Lease rows as last read or written, valid while the state generation is {@link cachedAt}. */
  private cache = new Map<string, LeaseCheck>();
  private cachedAt = stateGenerationNow();
  private readonly check: Sqlite.Statement<[string], LeaseCheck>;
  private readonly write: (pending: PendingRenewal[], seen: [string, number][]) => void;
  /** A chunk: the oldest renewals, then sightings, taken from the front while the budget lasts. */
  private readonly writeChunk: (taken: Taken, deadline: number) => void;

  constructor(
    private readonly db: Db,
    private readonly ttlMs: number,
    /** A flush is due this long after the last one (see {@link flushIfDue}). */
    readonly flushMs = 500,
    /** How long a paused lease is kept from its pause (at least the TTL). */
    private readonly pausedGraceMs: number,
  ) {
    const c = db.$client;
    this.check = c.prepare(
      `select l.status, l.worker_id as workerId, l.expires_at as expiresAt,
         l.start_step as startStep, l.expert_id as expertId, e.run_id as runId,
         e.status as expertStatus, e.target_steps as targetSteps, e.step,
         l.paused_at as pausedAt
       from leases l join experts e on e.id = l.expert_id where l.id = ?`,
    );
    // The end of a pause (stored paused, renewed unpaused) writes its deadline as is: the shorter
    // one of a training lease replaces the paused one. Positional parameters, as in the other hot
    // statements: pausedAt, expiresAt twice, step, pausedAt, leaseId.
    const renew = c.prepare<[number | null, number, number, number, number | null, string]>(
      `update leases set
         expires_at = case when paused_at is not null and ? is null then ?
                           else max(expires_at, ?) end,
         last_step = ?, paused_at = ?
       where id = ? and status = 'active'`,
    );
    const progress = c.prepare(
      `update experts set step = ?, loss = coalesce(?, loss), images_per_sec = ?,
         last_heartbeat_at = ?, updated_at = ? where id = ?`,
    );
    // A point acknowledged while its lease was active stays on the curve even if the lease ended
    // meanwhile, as long as its expert still exists (a deleted run takes its curve with it).
    const point = c.prepare(
      `insert into expert_metrics (expert_id, run_id, step, loss, images_per_sec, at)
       select ?, ?, ?, ?, ?, ? where exists (select 1 from experts where id = ?)`,
    );
    const seen = c.prepare(
      'update workers set last_seen_at = max(coalesce(last_seen_at, 0), ?) where id = ?',
    );
    const renewal = (p: PendingRenewal): void => {
      // An ended lease (released, expired, revoked, completed meanwhile) keeps its row as is.
      if (
        renew.run(p.pausedAt, p.expiresAt, p.expiresAt, p.step, p.pausedAt, p.leaseId).changes > 0
      ) {
        progress.run(p.step, p.loss, p.imagesPerSec, p.at, p.at, p.expertId);
        const cached = this.cache.get(p.leaseId);
        if (cached) {
          const resumed = cached.pausedAt !== null && p.pausedAt === null;
          cached.expiresAt = resumed ? p.expiresAt : Math.max(cached.expiresAt, p.expiresAt);
          cached.step = p.step;
          cached.pausedAt = p.pausedAt;
        }
      }
      if (p.point) point.run(...p.point, p.point[0]);
    };
    this.write = c.transaction((pending: PendingRenewal[], seenAt: [string, number][]) => {
      for (const p of pending) renewal(p);
      for (const [workerId, at] of seenAt) seen.run(at, workerId);
    });
    this.writeChunk = c.transaction((taken: Taken, deadline: number) => {
      let rows = 0;
      const spent = () =>
        rows >= CHUNK || (rows % ROWS_PER_CLOCK === 0 && performance.now() >= deadline);
      for (const entry of this.pending) {
        if (rows > 0 && spent()) return;
        this.pending.delete(entry[0]);
        taken.pending.push(entry);
        renewal(entry[1]);
        rows++;
      }
      for (const entry of this.seen) {
        if (rows > 0 && spent()) return;
        this.seen.delete(entry[0]);
        taken.seen.push(entry);
        seen.run(entry[1], entry[0]);
        rows++;
      }
    });
  }

  /** Whether a due flush has chunks left to write. */
  get draining(): boolean {
    return this.drainLeft > 0;
  }

  /** Renewals (with their curve points) and sightings not yet written. */
  get backlog(): number {
    return this.pending.size + this.seen.size;
  }

  /**
   * Check a heartbeat and renew its lease in memory; the deadline acknowledged. Refuses exactly
   * as {@link heartbeatNow} does (unknown_lease, lease_expired, invalid_message).
   */
  heartbeat(workerId: string, hb: HeartbeatMessage): Date {
    const row = this.leaseRow(hb.leaseId);
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
    if (row.expertStatus === 'leased')
      return heartbeatNow(this.db, this.ttlMs, workerId, hb, this.pausedGraceMs);
    if (hb.step < row.startStep || hb.step > row.targetSteps) {
      throw new LeaseError(
        'invalid_message',
        `heartbeat step ${hb.step} is outside this lease's range [${row.startStep}, ${row.targetSteps}]`,
      );
    }
    const now = Date.now();
    // A pause keeps its start (a cached row holds the stored one) until a heartbeat without it.
    const pausedAt = hb.paused ? ((pending ? pending.pausedAt : row.pausedAt) ?? now) : null;
    const expiresAt = pausedAt === null ? now + this.ttlMs : pausedAt + this.pausedGraceMs;
    const finite = hb.loss !== null && Number.isFinite(hb.loss);
    // A curve point when the step moved on; the last one since the previous write is kept.
    const point: Metric | null =
      finite && hb.step !== (pending?.step ?? row.step)
        ? [row.expertId, row.runId, hb.step, hb.loss!, hb.imagesPerSec, now]
        : null;
    if (pending) {
      pending.expiresAt = expiresAt;
      pending.step = hb.step;
      if (finite) pending.loss = hb.loss;
      pending.imagesPerSec = hb.imagesPerSec;
      pending.at = now;
      pending.pausedAt = pausedAt;
      if (point) pending.point = point;
    } else {
      this.pending.set(hb.leaseId, {
        leaseId: hb.leaseId,
        expertId: row.expertId,
        expiresAt,
        step: hb.step,
        loss: finite ? hb.loss : null,
        imagesPerSec: hb.imagesPerSec,
        at: now,
        point,
        pausedAt,
      });
    }
    return new Date(expiresAt);
  }

  /** The deadline acknowledged for this lease and not yet written (ms), if any. */
  promised(leaseId: string): number | undefined {
    return this.pending.get(leaseId)?.expiresAt;
  }

  /** Forget every cached lease row (another process committed to the database). */
  invalidate(): void {
    this.cache.clear();
  }

  /** The lease's row joined with its expert's: from the cache while no state has changed. */
  private leaseRow(leaseId: string): LeaseCheck | undefined {
    const generation = stateGenerationNow();
    if (generation !== this.cachedAt || this.cache.size >= MAX_CACHED) {
      this.cache.clear();
      this.cachedAt = generation;
    }
    let row = this.cache.get(leaseId);
    if (!row) {
      row = this.check.get(leaseId);
      if (row) this.cache.set(leaseId, row);
    }
    return row;
  }

  /**
   * A frame from this worker arrived now: its `last_seen_at`, written at the next flush (`idle`: a
   * lease request, written at most every {@link SIGHTING_MS}).
   */
  sawWorker(workerId: string, at = Date.now(), idle = false): void {
    if (idle) {
      const written = this.sightingWritten.get(workerId);
      if (written !== undefined && at - written < SIGHTING_MS) return;
    }
    this.seen.set(workerId, at);
  }

  /** The worker's sighting is written by someone else now (its connection closed). */
  forgetWorker(workerId: string): void {
    this.seen.delete(workerId);
    this.sightingWritten.delete(workerId);
  }

  /** Sightings just committed. */
  private wroteSightings(seen: [string, number][]): void {
    for (const [id, at] of seen) this.sightingWritten.set(id, at);
  }

  /**
   * The due flush's next chunk: a flush is due when the last one started `flushMs` ago; it then
   * writes what was pending at that moment, oldest first (renewals, then sightings), in chunks of
   * at most {@link CHUNK} rows and {@link CHUNK_BUDGET_MS} of writing, one transaction each, at
   * least {@link CHUNK_GAP_MS} apart. Called on every heartbeat
   * and by the hub's timer (which a loop busy reading sockets runs late): under load the crash
   * window stays one interval. `next`: write the next chunk of a flush under way without waiting
   * for the gap (the hub's continuation after the loop has read its sockets). The number written.
   */
  flushIfDue(now = Date.now(), next = false): number {
    if (this.drainLeft <= 0) {
      if (next || now - this.lastFlushAt < this.flushMs) return 0;
      this.lastFlushAt = now;
      this.drainLeft = this.backlog;
      if (this.drainLeft === 0) return 0;
    } else if (!next && now - this.lastChunkAt < CHUNK_GAP_MS) return 0;
    this.lastChunkAt = now;
    const taken: Taken = { pending: [], seen: [] };
    try {
      this.writeChunk(taken, performance.now() + CHUNK_BUDGET_MS);
    } catch (err) {
      // Kept for the next due flush, an interval later, not retried at every heartbeat.
      this.keep(taken.pending, taken.seen);
      this.drainLeft = 0;
      throw err;
    }
    this.wroteSightings(taken.seen);
    const n = taken.pending.length + taken.seen.length;
    this.drainLeft = n === 0 ? 0 : this.drainLeft - n;
    return n;
  }

  /**
   * Write every pending renewal, curve point and sighting in one transaction; the number written.
   * On failure (the database busy past its timeout) they stay pending, newer ones winning.
   */
  flush(): number {
    this.lastFlushAt = Date.now();
    this.drainLeft = 0;
    const n = this.backlog;
    if (n === 0) return 0;
    const pending = [...this.pending];
    const seen = [...this.seen];
    this.pending = new Map();
    this.seen = new Map();
    this.writeOrKeep(pending, seen);
    this.wroteSightings(seen);
    return n;
  }

  /** Write in one transaction; on failure put them back, newer ones winning. */
  private writeOrKeep(pending: [string, PendingRenewal][], seen: [string, number][]): void {
    try {
      this.write(
        pending.map((e) => e[1]),
        seen,
      );
    } catch (err) {
      this.keep(pending, seen);
      throw err;
    }
  }

  /** Put back what a failed write took, newer ones winning. */
  private keep(pending: [string, PendingRenewal][], seen: [string, number][]): void {
    for (const [id, p] of pending) {
      const newer = this.pending.get(id);
      if (!newer) this.pending.set(id, p);
      // A newer renewal wins, but an unwritten point stays unless a newer one replaced it.
      else newer.point ??= p.point;
    }
    for (const [id, at] of seen) if (!this.seen.has(id)) this.seen.set(id, at);
  }
}
