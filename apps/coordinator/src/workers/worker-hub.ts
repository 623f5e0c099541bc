import {
  type CoordinatorMessage,
  type ErrorFrame,
  type Hello,
  MAX_FRAME_BYTES,
  negotiateProtocol,
  PROTOCOL_VERSIONS,
  parseFrame,
  WORKER_ERROR_REASONS,
  type WorkerErrorCode,
  type WorkerErrorReason,
  type WorkerMessage,
} from '@archipelago/protocol';
import { and, eq, inArray, isNotNull } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { Db } from '../db/database.js';
import { type LeaseRow, workers, workerTokens } from '../db/schema/index.js';
import { DomainError, type ErrorCode } from '../errors.js';
import { newId } from '../ids.js';
import { EVENTS, recordEvent, stateGenerationNow } from '../lifecycle/events.js';
import { HubMetrics } from '../metrics.js';
import { collectCheckpoints } from '../services/checkpoint-gc.js';
import { IdleRequests } from '../services/idle-requests.js';
import { LeaseRenewals } from '../services/lease-renewals.js';
import {
  beginCheckpoint,
  buildGrant,
  commitCheckpoint,
  confirmComplete,
  expireLeases,
  type LeaseDeps,
  releaseLease,
  revokeWorkerLeases,
  tryLease,
} from '../services/leases.js';
import { checkToken } from '../services/tokens.js';

/** WebSocket close codes (4000-4999 are the application's). */
export const CLOSE = {
  protocol: 1008,
  tooLarge: 1009,
  unauthorized: 4001,
  revoked: 4003,
  rateLimited: 4029,
  shutdown: 1001,
} as const;

export interface HubOptions extends LeaseDeps {
  log: Logger;
  config: LeaseDeps['config'] & {
    heartbeatMs: number;
    helloTimeoutMs?: number;
    wsPingMs?: number;
    maxConnectionsPerToken?: number;
    maxLeasesPerToken?: number;
    /**
     * How often acknowledged lease renewals and progress are written (one transaction each
     * time); a crash loses at most this much of them. Default 500 ms.
     */
    heartbeatFlushMs?: number;
    /** How long a paused lease is kept from its pause (config.ts). Default 1 hour. */
    pausedLeaseGraceMs?: number;
  };
  /** Hands a job row (checkpoint validation) to the job queue once its transaction committed. */
  dispatchJob?: (id: string) => void;
}

/**
 * The error frame of each domain error a worker's message can run into; any other error is the
 * coordinator's fault (`internal_error`, logged).
 */
const FRAME_CODES: Partial<Record<ErrorCode, WorkerErrorCode>> = {
  unknown_lease: 'unknown_lease',
  lease_expired: 'lease_expired',
  invalid_message: 'invalid_message',
  out_of_order: 'out_of_order',
  stale_checkpoint_step: 'invalid_message',
  checkpoint_step: 'invalid_message',
  checkpoint_size: 'invalid_message',
  lease_held: 'lease_held',
  lease_limit: 'lease_limit',
  // The expert moved on meanwhile (its lease ended, its run was cancelled): the message is late.
  invalid_transition: 'out_of_order',
};

/** How often checkpoint objects are collected, besides whenever leases end. */
const GC_MS = 5 * 60 * 1000;

/** Malformed frames tolerated on one connection before it is closed. */
const MAX_BAD_FRAMES = 20;

/**
 * How often the hub looks for tokens revoked by another process (the CLI). A look is one
 * `PRAGMA data_version` (a counter SQLite bumps when another connection commits) unless the
 * database changed; only then are the connected tokens read.
 */
const REVOCATION_POLL_MS = 250;

/** How often acknowledged heartbeats are written, unless configured. */
const DEFAULT_FLUSH_MS = 500;

/** How long a paused lease is kept from its pause, unless configured (config.ts). */
const DEFAULT_PAUSED_LEASE_GRACE_MS = 3_600_000;

/** Failed authentications per client, kept by the HTTP side (plugins/rate-limits.ts). */
export interface HelloGate {
  /** The client used up its failed attempts: refuse its hello before looking at the token. */
  locked(): Promise<boolean>;
  /** Count a failed hello (unknown or revoked token). */
  failed(): Promise<void>;
}

/**
 * Every live worker connection, and the lease clock. Each connection handles its frames one at a
 * time, in order; state lives in SQLite, so a restarted coordinator loses nothing.
 */
export class WorkerHub {
  private readonly connections = new Map<string, WorkerConnection>();
  private timer: NodeJS.Timeout | null = null;
  private gcTimer: NodeJS.Timeout | null = null;
  private collecting: Promise<void> | null = null;
  private revocationTimer: NodeJS.Timeout | null = null;
  private dataVersion: number | null = null;
  private readonly dataVersionStatement;
  private flushTimer: NodeJS.Timeout | null = null;
  /** A chunk of a due flush is scheduled (continueFlush). */
  private continuing = false;
  /** Tokens revoked while this hub runs (over REST here, or noticed in the database). */
  private readonly revokedTokens = new Set<string>();
  /** Heartbeats acknowledged and not yet written (services/lease-renewals.ts). */
  readonly renewals: LeaseRenewals;
  /** Lease requests with nothing to lease, answered from memory (services/idle-requests.ts). */
  readonly idle: IdleRequests;
  /** Set once the coordinator shuts down: late socket events must not touch the database. */
  stopped = false;
  /** Frames, grants, lease ends and checkpoint verdicts, served at /metrics (metrics.ts). */
  readonly metrics = new HubMetrics();

  constructor(readonly options: HubOptions) {
    this.renewals = new LeaseRenewals(
      options.db,
      options.config.leaseTtlMs,
      options.config.heartbeatFlushMs ?? DEFAULT_FLUSH_MS,
      options.config.pausedLeaseGraceMs ?? DEFAULT_PAUSED_LEASE_GRACE_MS,
    );
    this.dataVersionStatement = options.db.$client.prepare('PRAGMA data_version').pluck();
    this.idle = new IdleRequests(options.db, (id) => this.renewals.promised(id));
  }

  get db(): Db {
    return this.options.db;
  }

  /** Start expiring leases (and reconcile those that expired while the coordinator was down). */
  start(): void {
    this.sweep();
    void this.collectGarbage();
    this.gcTimer = setInterval(() => void this.collectGarbage(), GC_MS);
    this.gcTimer.unref();
    const every = Math.max(50, Math.min(1000, Math.floor(this.options.config.leaseTtlMs / 4)));
    let last = Date.now();
    this.timer = setInterval(() => {
      const now = Date.now();
      const stalled = now - last > 2 * every;
      last = now;
      // After the event loop was blocked (a long in-process job step), timers run before the
      // sockets are read: heartbeats sent meanwhile are still waiting. Sweep once this turn of the
      // loop has read them (setImmediate runs after the poll phase), so that the coordinator's own
      // stall never expires a lease. Deferred, never skipped: a loop that is late at every tick
      // (saturated with socket reads) still ends leases whose acknowledged deadline passed.
      if (stalled) setImmediate(() => this.sweep());
      else this.sweep();
    }, every);
    this.timer.unref();
    this.revocationTimer = setInterval(() => this.pollRevocations(), REVOCATION_POLL_MS);
    this.revocationTimer.unref();
    // Due flushes are written in chunks (services/lease-renewals.ts), started and continued by
    // every heartbeat and by this timer, which covers a lull.
    this.flushTimer = setInterval(
      () => this.flushRenewals(true),
      Math.min(this.renewals.flushMs, 50),
    );
    this.flushTimer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.gcTimer) clearInterval(this.gcTimer);
    if (this.revocationTimer) clearInterval(this.revocationTimer);
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.timer = null;
    this.revocationTimer = null;
    this.flushTimer = null;
    // A graceful stop loses no acknowledged heartbeat.
    this.flushRenewals();
    for (const c of this.connections.values()) c.close(CLOSE.shutdown, 'coordinator shutting down');
  }

  accept(socket: WebSocket, remote: string, gate: HelloGate): void {
    const conn = new WorkerConnection(this, socket, remote, gate);
    socket.on('close', () => conn.closed());
  }

  /** Connected workers by id. */
  online(): string[] {
    return [...this.connections.keys()];
  }

  register(conn: WorkerConnection, workerId: string): void {
    const previous = this.connections.get(workerId);
    if (previous && previous !== conn)
      previous.close(CLOSE.protocol, 'replaced by a new connection of the same worker');
    this.connections.set(workerId, conn);
  }

  /** Forget a closed connection; false when a newer connection of its worker replaced it. */
  unregister(conn: WorkerConnection, workerId: string): boolean {
    if (this.connections.get(workerId) !== conn) return false;
    this.connections.delete(workerId);
    return true;
  }

  /** Open connections of a token, not counting worker `except`'s (a reconnect replaces it). */
  connectionsOf(tokenId: string, except?: string): number {
    let n = 0;
    for (const [workerId, c] of this.connections)
      if (c.tokenId === tokenId && workerId !== except) n++;
    return n;
  }

  /**
   * Write the acknowledged renewals and progress now (one transaction), or with `ifDue` the due
   * flush's next chunk. Whoever reads a lease's deadline or an expert's step in this process for
   * a decision calls this (without `ifDue`) first.
   */
  flushRenewals(ifDue = false): void {
    try {
      if (!ifDue) this.renewals.flush();
      else if (this.renewals.flushIfDue() > 0) this.continueFlush();
    } catch (err) {
      this.options.log.error({ err }, 'heartbeat flush failed; kept for the next one');
    }
  }

  /**
   * The next chunk of a due flush once this turn of the loop has read its sockets (setImmediate),
   * so a flush ends within a few turns when heartbeats are sparse; a busy loop reaches it late,
   * and its heartbeats write the chunks meanwhile.
   */
  private continueFlush(): void {
    if (this.continuing || !this.renewals.draining || this.stopped) return;
    this.continuing = true;
    setImmediate(() => {
      this.continuing = false;
      if (this.stopped) return;
      try {
        if (this.renewals.flushIfDue(Date.now(), true) > 0) this.continueFlush();
      } catch (err) {
        this.options.log.error({ err }, 'heartbeat flush failed; kept for the next one');
      }
    });
  }

  /**
   * Whether the token was revoked, known in memory without a read per frame: revocations over
   * REST tell the hub, and one made by another process (the CLI) is picked up by the revocation
   * poll (which closes the token's sockets then; the revocation itself ended its leases, so a
   * heartbeat in between is refused by its lease's row).
   */
  tokenRevoked(tokenId: string): boolean {
    return this.revokedTokens.has(tokenId);
  }

  /** Close the live connections of a revoked token and end their leases. */
  revokeToken(tokenId: string): number {
    this.revokedTokens.add(tokenId);
    const affected = this.db
      .select({ id: workers.id })
      .from(workers)
      .where(eq(workers.tokenId, tokenId))
      .all()
      .map((w) => w.id);
    const ended = revokeWorkerLeases(this.db, affected, 'worker token revoked');
    for (const lease of ended) this.notifyLeaseEnded(lease, 'worker token revoked');
    if (ended.length > 0) void this.collectGarbage();
    let closed = 0;
    for (const id of affected) {
      const conn = this.connections.get(id);
      if (conn) {
        conn.sendError('token_revoked', 'this worker token was revoked', true);
        conn.close(CLOSE.revoked, 'token revoked');
        closed++;
      }
    }
    return closed;
  }

  /**
   * Close the connections of tokens revoked elsewhere (the CLI writes to the same database from
   * its own process); their leases were ended by the revocation itself.
   */
  private pollRevocations(): void {
    try {
      const version = this.dataVersionStatement.get() as number;
      if (version === this.dataVersion) return;
      this.dataVersion = version;
      // Lease rows another process changed (a CLI cancel or revocation) are read afresh, and
      // what it changed may have made work to lease.
      this.renewals.invalidate();
      this.idle.invalidate();
      const connected = new Set<string>();
      for (const c of this.connections.values()) if (c.tokenId) connected.add(c.tokenId);
      if (connected.size === 0) return;
      const revoked = this.db
        .select({ id: workerTokens.id })
        .from(workerTokens)
        .where(and(inArray(workerTokens.id, [...connected]), isNotNull(workerTokens.revokedAt)))
        .all();
      for (const t of revoked) {
        this.options.log.info({ token: t.id }, 'token revoked elsewhere: closing its connections');
        this.revokeToken(t.id);
      }
    } catch (err) {
      this.options.log.error({ err }, 'revocation poll failed');
    }
  }

  /** Expire every lease past its deadline (every tick, and at once when one is refused). */
  sweep(): void {
    if (this.stopped) return;
    // Expiry is decided on the acknowledged renewals: those not yet written count too.
    try {
      const expired = expireLeases(this.db, new Date(), (id) => this.renewals.promised(id));
      this.metrics.leaseEnds.inc('expired', expired.length);
      for (const lease of expired) {
        this.options.log.info({ lease: lease.id, worker: lease.workerId }, 'lease expired');
        this.notifyLeaseEnded(
          lease,
          lease.pausedAt
            ? 'lease expired: paused for longer than the paused-lease grace'
            : 'lease expired: no heartbeat within the lease TTL',
        );
      }
      if (expired.length > 0) void this.collectGarbage();
    } catch (err) {
      this.options.log.error({ err }, 'lease sweep failed');
    }
  }

  /**
   * Reject the uploads of ended leases, delete upload objects no open upload owns and collect
   * superseded checkpoints (services/checkpoint-gc.ts); one collection at a time. Runs every few
   * minutes and whenever leases end.
   */
  collectGarbage(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.collecting ??= collectCheckpoints(this.options)
      .then(
        () => {},
        (err: unknown) => this.options.log.warn({ err }, 'upload collection failed'),
      )
      .finally(() => {
        this.collecting = null;
      });
    return this.collecting;
  }

  /** Tell the connected holders of ended leases (before a revocation closes their sockets). */
  notifyLeasesEnded(ended: LeaseRow[], reason: string): void {
    for (const lease of ended) this.notifyLeaseEnded(lease, reason);
  }

  private notifyLeaseEnded(lease: LeaseRow, reason: string): void {
    this.connections.get(lease.workerId)?.send({ type: 'lease.revoke', leaseId: lease.id, reason });
  }
}

type ParsedFrame = ReturnType<typeof parseFrame<'worker'>>;

/**
 * One worker's socket: hello first, then requests handled strictly in order, except that a
 * heartbeat may overtake a checkpoint begin or commit waiting on the object store.
 */
class WorkerConnection {
  private workerId: string | null = null;
  /** The token this connection said hello with (null before hello). */
  tokenId: string | null = null;
  private objective: Hello['objective'] = 'any';
  /** The protocol version negotiated at hello (2: optimiser states in grants). */
  private protocol = 1;
  private badFrames = 0;
  private chain: Promise<void> = Promise.resolve();
  /** Frames in {@link chain}: the one being handled and those waiting behind it. */
  private queued = 0;
  /** Of those, the frames that are not a checkpoint begin or commit. */
  private queuedOther = 0;
  /** Closes a connection that opens and never says hello (it would hold a socket for free). */
  private helloTimer: NodeJS.Timeout | null;
  /** Pings the peer; one that did not answer the previous ping is dropped. */
  private readonly pingTimer: NodeJS.Timeout;
  private alive = true;

  constructor(
    private readonly hub: WorkerHub,
    private readonly socket: WebSocket,
    private readonly remote: string,
    private readonly gate: HelloGate,
  ) {
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      const arrived = performance.now();
      // Parsed once, on arrival: its type decides whether it may overtake (below).
      const parsed = isBinary ? null : parseFrame(data, 'worker', MAX_FRAME_BYTES);
      const type = parsed?.ok ? parsed.message.type : null;
      // A heartbeat overtakes checkpoint begins and commits waiting on the object store (and
      // nothing else): a slow or stalled store must not starve the renewals of the lease being
      // committed, which would expire under its own commit (found by the chaos run,
      // apps/worker/test/chaos/).
      if (type === 'heartbeat' && this.queued > 0 && this.queuedOther === 0) {
        void this.onFrame(parsed, arrived);
        return;
      }
      const other = type !== 'checkpoint.begin' && type !== 'checkpoint.commit';
      this.queued++;
      if (other) this.queuedOther++;
      this.chain = this.chain
        .then(() => this.onFrame(parsed, arrived))
        .finally(() => {
          this.queued--;
          if (other) this.queuedOther--;
        });
    });
    const timeoutMs = hub.options.config.helloTimeoutMs ?? 10_000;
    this.helloTimer = setTimeout(() => {
      this.helloTimer = null;
      if (this.workerId) return;
      this.sendError('out_of_order', `no hello within ${timeoutMs} ms`, true);
      this.close(CLOSE.protocol, 'no hello');
    }, timeoutMs);
    this.helloTimer.unref();
    socket.on('pong', () => {
      this.alive = true;
    });
    this.pingTimer = setInterval(() => {
      if (socket.readyState !== socket.OPEN) return;
      if (!this.alive) {
        hub.options.log.info({ worker: this.workerId, remote }, 'worker missed a pong: dropped');
        socket.terminate();
        return;
      }
      this.alive = false;
      socket.ping();
    }, hub.options.config.wsPingMs ?? 20_000);
    this.pingTimer.unref();
  }

  send(message: CoordinatorMessage): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(JSON.stringify(message));
  }

  sendError(
    code: WorkerErrorCode,
    message: string,
    fatal: boolean,
    inReplyTo?: string,
    reason?: WorkerErrorReason,
  ): void {
    const frame: ErrorFrame = {
      type: 'error',
      code,
      message,
      fatal,
      ...(inReplyTo ? { inReplyTo } : {}),
      ...(reason ? { reason } : {}),
    };
    this.send(frame);
  }

  close(code: number, reason: string): void {
    if (
      this.socket.readyState === this.socket.OPEN ||
      this.socket.readyState === this.socket.CONNECTING
    ) {
      this.socket.close(code, reason);
      // A peer that never answers the closing handshake must not hold up shutdown.
      setTimeout(() => this.socket.terminate(), 1000).unref();
    }
  }

  closed(): void {
    if (this.helloTimer) clearTimeout(this.helloTimer);
    clearInterval(this.pingTimer);
    if (!this.workerId || this.hub.stopped) return;
    // A connection replaced by its worker's reconnect leaves the worker online.
    if (!this.hub.unregister(this, this.workerId)) return;
    // Leases stay: a worker that reconnects within the TTL re-attaches to its lease.
    this.hub.renewals.forgetWorker(this.workerId);
    this.hub.db
      .update(workers)
      .set({ online: false, lastSeenAt: new Date() })
      .where(eq(workers.id, this.workerId))
      .run();
  }

  /** Handle a frame parsed on arrival (null: a binary frame). */
  private async onFrame(parsed: ParsedFrame | null, arrived: number): Promise<void> {
    const { log } = this.hub.options;
    if (!parsed)
      return this.bad(
        'invalid_message',
        'binary frames are not part of the protocol; send JSON text',
      );
    if (!parsed.ok) {
      if (parsed.code === 'frame_too_large') {
        this.hub.metrics.invalidFrames.inc('too_large');
        this.sendError(parsed.code, parsed.message, true);
        return this.close(CLOSE.tooLarge, 'frame too large');
      }
      return this.bad(parsed.code, parsed.message, parsed.inReplyTo);
    }
    const msg = parsed.message;
    try {
      if (!this.workerId) {
        if (msg.type !== 'hello') {
          this.sendError(
            'out_of_order',
            `the first frame must be hello, not ${msg.type}`,
            true,
            msg.type,
          );
          return this.close(CLOSE.protocol, 'hello expected');
        }
        return await this.onHello(msg);
      }
      await this.onMessage(msg);
    } catch (err) {
      const frameCode = err instanceof DomainError ? FRAME_CODES[err.code] : undefined;
      if (frameCode) {
        // A lease refused as past its deadline may not be swept yet (the sweep runs every few
        // seconds): sweep now, so that its expert is pending again before the worker, told its
        // lease expired, asks for one. Otherwise the request can find nothing to train and a
        // worker with --exit-when-idle leaves the expert to nobody (seen after a coordinator
        // restart, when every worker re-attaches to a lease that ran out while it was down).
        if (frameCode === 'lease_expired') this.hub.sweep();
        const reason = WORKER_ERROR_REASONS.find((r) => r === (err as DomainError).code);
        return this.sendError(frameCode, (err as Error).message, false, msg.type, reason);
      }
      log.error({ err, worker: this.workerId, type: msg.type }, 'worker message failed');
      this.sendError(
        'internal_error',
        'the coordinator could not handle this message; see its log',
        false,
        msg.type,
      );
    } finally {
      this.hub.metrics.frames.observe(msg.type, (performance.now() - arrived) / 1000);
    }
  }

  private bad(code: WorkerErrorCode, message: string, inReplyTo?: string): void {
    this.hub.metrics.invalidFrames.inc('invalid');
    this.badFrames++;
    const fatal = this.badFrames >= MAX_BAD_FRAMES;
    this.sendError(code, message, fatal, inReplyTo);
    if (fatal) this.close(CLOSE.protocol, 'too many invalid frames');
  }

  private async onHello(msg: Hello): Promise<void> {
    const { db, config } = this.hub.options;
    // Too many unknown or revoked tokens from this client: refused before the token is looked at,
    // so tokens cannot be guessed at speed, while any number of valid workers behind one NAT
    // connect.
    if (await this.gate.locked()) {
      this.sendError(
        'rate_limited',
        'too many failed connection attempts from this address; wait a minute',
        true,
        'hello',
      );
      this.close(CLOSE.rateLimited, 'rate limited');
      return;
    }
    const protocol = negotiateProtocol(msg.protocols);
    if (protocol === null) {
      this.sendError(
        'unsupported_protocol',
        `no common protocol version: worker speaks ${msg.protocols.join(', ')}, coordinator speaks ${PROTOCOL_VERSIONS.join(', ')}`,
        true,
        'hello',
      );
      this.close(CLOSE.protocol, 'unsupported protocol');
      return;
    }
    const token = checkToken(db, msg.token);
    if (!token.ok) {
      await this.gate.failed();
      const text =
        token.code === 'token_revoked' ? 'this worker token was revoked' : 'unknown worker token';
      this.sendError(token.code, text, true, 'hello');
      this.close(token.code === 'token_revoked' ? CLOSE.revoked : CLOSE.unauthorized, text);
      return;
    }
    const now = new Date();
    const known = msg.workerId
      ? db
          .select()
          .from(workers)
          .where(and(eq(workers.id, msg.workerId), eq(workers.tokenId, token.row.id)))
          .get()
      : undefined;
    // No await from here to register(): the count and the registration are one step.
    const maxConnections = config.maxConnectionsPerToken ?? Number.POSITIVE_INFINITY;
    const open = this.hub.connectionsOf(token.row.id, known?.id);
    if (open >= maxConnections) {
      this.sendError(
        'connection_limit',
        `this token already has ${open} open connections, the most a token may have; close one first`,
        true,
        'hello',
      );
      this.close(CLOSE.rateLimited, 'too many connections on this token');
      return;
    }
    const fields = {
      name: msg.name,
      objective: msg.objective,
      backend: msg.backend,
      hardware: msg.hardware as Record<string, unknown>,
      protocolVersion: protocol,
      online: true,
      connectedAt: now,
      lastSeenAt: now,
    };
    const workerId = db.transaction((tx) => {
      const id = known?.id ?? newId('worker');
      if (known) tx.update(workers).set(fields).where(eq(workers.id, id)).run();
      else
        tx.insert(workers)
          .values({ id, tokenId: token.row.id, ...fields })
          .run();
      recordEvent(tx, EVENTS.workerConnected, {
        workerId: id,
        data: {
          name: msg.name,
          objective: msg.objective,
          backend: msg.backend,
          // Not the volunteer's address: the event log and the live stream are public reads.
          reattached: Boolean(known),
        },
      });
      return id;
    });
    this.hub.options.log.info({ worker: workerId, remote: this.remote }, 'worker connected');
    this.workerId = workerId;
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    this.tokenId = token.row.id;
    this.objective = msg.objective;
    this.protocol = protocol;
    this.hub.register(this, workerId);
    this.send({
      type: 'welcome',
      protocol,
      workerId,
      heartbeatMs: config.heartbeatMs,
      leaseTtlMs: config.leaseTtlMs,
      maxFrameBytes: MAX_FRAME_BYTES,
    });
  }

  private async onMessage(msg: WorkerMessage): Promise<void> {
    const { db, config } = this.hub.options;
    const workerId = this.workerId!;
    this.hub.renewals.sawWorker(workerId, Date.now(), msg.type === 'lease.request');
    // An idle worker's request while nothing is pending: answered from memory, no read at all.
    const nothing =
      msg.type === 'lease.request' && this.hub.idle.nothingFor(workerId, this.objective);
    // Every other message reads leases and experts for a decision: on the acknowledged renewals.
    if (msg.type !== 'heartbeat' && !nothing) this.hub.flushRenewals();
    switch (msg.type) {
      case 'hello':
        return this.sendError(
          'out_of_order',
          'hello was already accepted on this connection',
          false,
          'hello',
        );
      case 'lease.request': {
        const none = () =>
          this.send({
            type: 'lease.none',
            retryAfterMs: config.heartbeatMs,
            reason: `no pending expert for objective ${this.objective}`,
          });
        if (nothing) return none();
        const generation = stateGenerationNow();
        const leased = tryLease(
          db,
          workerId,
          this.objective,
          config.leaseTtlMs,
          config.maxLeasesPerToken,
        );
        if (!leased) {
          this.hub.idle.remember(this.objective, generation);
          return none();
        }
        let grant: Awaited<ReturnType<typeof buildGrant>>;
        try {
          grant = await buildGrant(this.hub.options, leased.lease, leased.expert, this.protocol);
        } catch (err) {
          // The object store failed while the grant was prepared (checking the resume point,
          // presigning): the lease is given back at once, nothing about the expert is decided,
          // and the worker asks again.
          this.hub.options.log.warn(
            { err, lease: leased.lease.id, expert: leased.expert.id },
            'could not prepare a lease grant; lease given back',
          );
          try {
            releaseLease(
              db,
              workerId,
              leased.lease.id,
              `the coordinator could not prepare the grant: ${(err as Error).message}`,
            );
          } catch {
            // Ended meanwhile (revoked, cancelled): nothing to give back.
          }
          return this.send({
            type: 'lease.none',
            retryAfterMs: config.heartbeatMs,
            reason: 'the object store did not answer while the lease was prepared; ask again',
          });
        }
        this.hub.metrics.leaseGrants.inc(leased.regrant ? 'regrant' : 'first');
        return this.send(grant);
      }
      case 'heartbeat': {
        // A token revoked elsewhere (CLI, another coordinator process) is noticed here.
        if (this.hub.tokenRevoked(this.tokenId!)) {
          this.hub.revokeToken(this.tokenId!);
          return;
        }
        const expiresAt = this.hub.renewals.heartbeat(workerId, msg);
        this.send({
          type: 'heartbeat.ack',
          leaseId: msg.leaseId,
          expiresAt: expiresAt.toISOString(),
        });
        // Due by time even when the loop runs its timers late (saturated with socket reads).
        return this.hub.flushRenewals(true);
      }
      case 'checkpoint.begin': {
        const r = await beginCheckpoint(this.hub.options, workerId, msg);
        return this.send({
          type: 'checkpoint.url',
          leaseId: msg.leaseId,
          checkpointId: r.checkpoint.id,
          putUrl: r.putUrl,
          headers: r.headers,
          expiresAt: r.expiresAt.toISOString(),
          ...(r.optimizer ? { optimizer: r.optimizer } : {}),
        });
      }
      case 'checkpoint.commit': {
        const r = await commitCheckpoint(
          this.hub.options,
          workerId,
          msg.leaseId,
          msg.checkpointId,
        ).catch((err: unknown) => this.hub.metrics.commitFailed(err));
        this.hub.metrics.countCommit(r);
        if (r.accepted && r.validationJobId) this.hub.options.dispatchJob?.(r.validationJobId);
        if (r.accepted)
          return this.send({
            type: 'checkpoint.accepted',
            leaseId: msg.leaseId,
            checkpointId: r.checkpoint.id,
            step: r.checkpoint.step,
          });
        return this.send({
          type: 'checkpoint.rejected',
          leaseId: msg.leaseId,
          checkpointId: r.checkpoint.id,
          reason: r.reason,
        });
      }
      case 'lease.release':
        releaseLease(db, workerId, msg.leaseId, msg.reason);
        this.hub.metrics.leaseEnds.inc('released');
        void this.hub.collectGarbage();
        return;
      case 'lease.complete':
        return confirmComplete(db, workerId, msg.leaseId, msg.checkpointId);
      case 'error':
        this.hub.options.log.warn(
          { worker: workerId, code: msg.code, message: msg.message },
          'worker reported an error',
        );
        return;
    }
  }
}
