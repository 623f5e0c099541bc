/**
 * The worker daemon: connects to the coordinator, re-attaches to the lease its work dir recorded,
 * then leases experts one after another and trains them (see {@link LeaseSession}), heartbeating
 * while it holds a lease. Ends on a graceful stop (exit 0), a finish (0: the current checkpoint
 * uploaded and the lease released), with no work left under `--exit-when-idle` (0), when the
 * coordinator refuses it for good (3), or above its memory ceiling (4). While paused it trains
 * nothing and asks for no lease; a held lease keeps heartbeating, saying `paused`.
 */
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { BackendInfo } from '@archipelago/models';
import {
  type CoordinatorMessage,
  type ExpertObjective,
  type Hello,
  type LeaseGrant,
  PROTOCOL_VERSIONS,
  type Welcome,
} from '@archipelago/protocol';
import { abortableSleep } from './abortable-sleep.js';
import { Backoff } from './backoff.js';
import {
  Connection,
  type ConnectionOptions,
  type CoordinatorRefusedError,
  DisconnectedError,
  RequestError,
} from './connection.js';
import { Controls } from './controls.js';
import { EXIT, type ExitCode } from './exit-codes.js';
import { LeaseSession, type SessionOutcome } from './lease-session.js';
import { ObjectCache } from './object-cache.js';
import type { Reporter } from './reporter.js';
import type { Orphan } from './resume.js';
import { VERSION } from './version.js';
import type { SavedLease, WorkDir, WorkerState } from './work-dir.js';

export interface WorkerOptions {
  /** The coordinator's base URL. */
  coordinator: string;
  token: string;
  objective: ExpertObjective;
  name: string;
  /** Data-parallel trainer threads. */
  threads: number;
  exitWhenIdle: boolean;
  /** An opened (locked) work dir. */
  workDir: WorkDir;
  backend: BackendInfo;
  hardware: Hello['hardware'];
  log: Reporter;
  /** Consecutive failed leases after which the worker gives up (exit 1). Default 5. */
  maxFailures?: number;
  /** The volunteer's pause, finish and memory ceiling (default: none set). */
  controls?: Controls;
  /** Overrides of connection timings (tests). */
  connection?: Partial<Pick<ConnectionOptions, 'backoff' | 'requestTimeoutMs' | 'pingIntervalMs'>>;
}

/** What `worker status` answers (the local control socket, control-socket.ts). */
export interface WorkerStatus {
  pid: number;
  name: string;
  coordinator: string;
  state: 'training' | 'paused' | 'finishing' | 'stopping' | 'idle';
  /** When training was paused, or null. */
  pausedSince: string | null;
  connected: boolean;
  lease: {
    leaseId: string;
    runId: string;
    cluster: number;
    objective: string;
    step: number;
    targetSteps: number;
  } | null;
  threads: number;
  rssMb: number;
  maxMemoryMb: number | null;
}

export class Worker {
  private state: WorkerState;
  private readonly conn: Connection;
  private readonly cache: ObjectCache;
  private readonly shutdown = new AbortController();
  private stopRequested = false;
  private refusal: CoordinatorRefusedError | null = null;
  private session: LeaseSession | null = null;
  /** What the last lost lease had trained past its accepted checkpoint. */
  private orphan: Orphan | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private heartbeatMs = 5000;
  private failures = 0;
  private readonly failureBackoff = new Backoff(2000, 300_000);
  readonly controls: Controls;
  /** Aborted by a finish: wakes the waits between leases. */
  private readonly finished = new AbortController();
  /** The RSS (MiB) that went above the memory ceiling, once it did. */
  private overMemoryMb: number | null = null;

  constructor(private readonly options: WorkerOptions) {
    const { workDir, log } = options;
    this.controls = options.controls ?? new Controls();
    // Tell the coordinator at once that the lease is paused or trains again.
    this.controls.onChange(() => {
      if (this.session) this.beat();
      if (this.controls.finishing) this.finished.abort();
    });
    this.state = workDir.readState();
    this.cache = new ObjectCache(workDir.cacheDir, {
      log: (m) => log.warn(m),
      write: (file, data) => workDir.writeAtomic(file, data),
    });
    this.conn = new Connection({
      coordinator: options.coordinator,
      hello: () => this.hello(),
      onWelcome: (w) => this.onWelcome(w),
      onMessage: (m) => this.onMessage(m),
      onRefused: (err) => {
        this.refusal = err;
        this.shutdown.abort(err);
      },
      log: (m) => log.info(m),
      ...options.connection,
    });
  }

  /** The hello this worker sends (its saved identity included); exported for validation. */
  hello(): Hello {
    const o = this.options;
    const workerId = this.state.identities[o.coordinator]?.workerId;
    return {
      type: 'hello',
      protocols: [...PROTOCOL_VERSIONS],
      token: o.token,
      ...(workerId ? { workerId } : {}),
      name: o.name,
      objective: o.objective,
      backend: o.backend.name,
      hardware: o.hardware,
      version: VERSION,
    };
  }

  /** Ask for a graceful stop: finish the step, checkpoint, upload, release, exit 0. */
  stop(why: string): void {
    if (this.stopRequested) return;
    this.stopRequested = true;
    this.options.log.info(
      `${why}: stopping after the current step (checkpoint, upload, release); send it again to exit at once`,
    );
    this.shutdown.abort(new Error(why));
  }

  /** Pause training after the current step (SIGUSR1, `worker pause`); the lease is kept. */
  pause(why: string): void {
    if (this.controls.finishing || this.stopRequested) {
      this.options.log.info(`${why}: not pausing, the worker is finishing or stopping`);
      return;
    }
    if (!this.controls.pause()) return;
    this.options.log.info(
      `${why}: pausing ${this.session ? `after the current step (step ${this.session.step})` : 'before the next lease'}; resume with \`worker resume\` or SIGUSR2`,
    );
  }

  /** Resume a paused worker (SIGUSR2, `worker resume`). */
  resume(why: string): void {
    if (this.controls.resume()) this.options.log.info(`${why}: resuming`);
  }

  /**
   * Finish (`worker finish`): train on to the next checkpoint step, upload that checkpoint, release
   * the lease and exit 0; at once with no lease held. A paused worker resumes to get there.
   */
  finish(why: string): void {
    if (!this.controls.finish()) return;
    const s = this.session;
    if (!s) {
      this.options.log.info(`${why}: no lease held; exiting`);
      return;
    }
    const { checkpointInterval: interval, targetSteps: target } = s.grant.training;
    const next = Math.min(target, Math.max(s.step, Math.ceil(s.step / interval) * interval));
    this.options.log.info(
      `${why}: finishing: training on to step ${next} (the next checkpoint), then upload, release and exit; SIGTERM stops sooner`,
    );
  }

  /** What `worker status` shows. */
  status(): WorkerStatus {
    const s = this.session;
    const since = this.controls.since;
    return {
      pid: process.pid,
      name: this.options.name,
      coordinator: this.options.coordinator,
      state: this.stopRequested
        ? 'stopping'
        : this.controls.finishing
          ? 'finishing'
          : this.controls.paused
            ? 'paused'
            : s
              ? 'training'
              : 'idle',
      pausedSince: since === null ? null : new Date(since).toISOString(),
      connected: this.conn.ready,
      lease: s
        ? {
            leaseId: s.leaseId,
            runId: s.grant.expert.runId,
            cluster: s.grant.expert.cluster,
            objective: s.grant.objective,
            step: s.step,
            targetSteps: s.grant.training.targetSteps,
          }
        : null,
      threads: this.options.threads,
      rssMb: Math.round(process.memoryUsage.rss() / 1024 ** 2),
      maxMemoryMb: this.controls.limits.maxMemoryMb ?? null,
    };
  }

  /** Run until stopped, idle (with exitWhenIdle) or refused; returns the exit code. */
  async run(): Promise<ExitCode> {
    const { log } = this.options;
    this.removeStrayCheckpoints();
    this.conn.start();
    let code: ExitCode = EXIT.ok;
    try {
      await this.reattach();
      let idleSince = 0;
      while (!this.stopRequested && !this.refusal && !this.controls.finishing) {
        // Paused between leases: ask for none until resumed.
        while (this.controls.paused && !this.stopRequested && !this.controls.finishing)
          await this.controls.waitForChange(60_000, this.shutdown.signal);
        if (this.stopRequested || this.controls.finishing) break;
        try {
          await this.conn.waitReady(this.betweenLeases);
        } catch {
          break;
        }
        let reply: Awaited<ReturnType<typeof this.requestLease>>;
        try {
          reply = await this.requestLease();
        } catch (err) {
          if (err instanceof RequestError) {
            log.warn(`lease request refused: ${err.message} (${err.code})`);
            await abortableSleep(this.heartbeatMs, this.betweenLeases);
          }
          continue;
        }
        if (reply.type === 'lease.none') {
          if (this.options.exitWhenIdle) {
            log.info(`no work left (${reply.reason}); exiting (--exit-when-idle)`);
            break;
          }
          if (idleSince === 0) {
            idleSince = Date.now();
            log.info(`no work right now (${reply.reason}); waiting`);
          }
          // Jitter, so that many idle workers do not ask in lockstep.
          const wait = Math.max(250, reply.retryAfterMs) * (0.75 + 0.5 * Math.random());
          await abortableSleep(wait, this.betweenLeases);
          continue;
        }
        idleSince = 0;
        const outcome = await this.runSession(reply);
        if (this.controls.finishing) {
          log.info(`finished (${outcome}); exiting`);
          break;
        }
        if (outcome === 'failed') {
          this.failures++;
          if (this.failures >= (this.options.maxFailures ?? 5)) {
            log.error(`${this.failures} leases in a row failed; giving up`);
            code = EXIT.error;
            break;
          }
          const wait = this.failureBackoff.next();
          log.info(`asking for another lease in ${(wait / 1000).toFixed(1)} s`);
          await abortableSleep(wait, this.betweenLeases);
        } else if (outcome === 'completed') {
          this.failures = 0;
          this.failureBackoff.reset();
        }
      }
    } finally {
      this.stopHeartbeats();
      await this.conn.close();
    }
    if (this.refusal) {
      log.error(
        `the coordinator refused this worker: ${this.refusal.message} (${this.refusal.code}); check --token and the coordinator URL`,
      );
      return EXIT.refused;
    }
    if (this.overMemoryMb !== null) {
      log.error(
        `stopped: the worker used ${this.overMemoryMb} MiB, above --max-memory-mb ${this.controls.limits.maxMemoryMb}; give it more, or train a smaller preset`,
      );
      return EXIT.memory;
    }
    if (this.stopRequested) log.info('stopped');
    return code;
  }

  /** Aborted by a stop, a refusal or a finish: what the waits between leases end on. */
  private get betweenLeases(): AbortSignal {
    return AbortSignal.any([this.shutdown.signal, this.finished.signal]);
  }

  /** The RSS went above the memory ceiling: stop now, without training on, and exit 4. */
  private onOverMemory(mb: number): void {
    if (this.overMemoryMb !== null || this.stopRequested) return;
    this.overMemoryMb = mb;
    this.stopRequested = true;
    this.options.log.error(
      `memory: the worker uses ${mb} MiB, above --max-memory-mb ${this.controls.limits.maxMemoryMb}; stopping now (upload what is checkpointed, release the lease, exit ${EXIT.memory})`,
    );
    this.shutdown.abort(new Error('above the memory ceiling'));
  }

  private requestLease() {
    return this.conn.request({ type: 'lease.request' }, ['lease.grant', 'lease.none']);
  }

  /** After a restart: continue the lease the work dir recorded, if the coordinator still has it. */
  private async reattach(): Promise<void> {
    const saved = this.state.lease;
    if (!saved) return;
    const { log } = this.options;
    if (saved.coordinator !== this.options.coordinator) {
      log.info(`forgetting lease ${saved.leaseId} of another coordinator (${saved.coordinator})`);
      this.saveLease(null);
      this.removeStrayCheckpoints();
      return;
    }
    for (;;) {
      try {
        await this.conn.waitReady(this.shutdown.signal);
      } catch {
        return;
      }
      try {
        await this.conn.request(
          {
            type: 'heartbeat',
            leaseId: saved.leaseId,
            step: saved.checkpoint?.step ?? saved.acceptedStep ?? 0,
            loss: null,
            imagesPerSec: 0,
          },
          ['heartbeat.ack'],
        );
      } catch (err) {
        if (err instanceof DisconnectedError) continue;
        log.info(
          `the lease recorded in the work dir (${saved.leaseId}) is gone: ${(err as Error).message}`,
        );
        this.saveLease(null);
        this.removeStrayCheckpoints();
        return;
      }
      await this.runSession(saved.grant, saved);
      return;
    }
  }

  private async runSession(grant: LeaseGrant, saved?: SavedLease): Promise<SessionOutcome> {
    const { log, workDir, threads, coordinator } = this.options;
    const session = new LeaseSession(
      {
        coordinator,
        conn: this.conn,
        log,
        workDir,
        cache: this.cache,
        threads,
        saveLease: (lease) => this.saveLease(lease),
        stopping: () => this.stopRequested,
        refused: () => this.refusal !== null,
        shutdown: this.shutdown.signal,
        controls: this.controls,
        overMemory: (mb) => this.onOverMemory(mb),
      },
      grant,
      saved,
      this.orphan,
    );
    this.session = session;
    this.startHeartbeats();
    try {
      return await session.run();
    } finally {
      this.orphan = session.leftover;
      this.session = null;
      this.stopHeartbeats();
    }
  }

  private saveLease(lease: SavedLease | null): void {
    this.state = { ...this.state, lease };
    this.options.workDir.writeState(this.state);
  }

  private onWelcome(w: Welcome): void {
    const { coordinator, log } = this.options;
    const known = this.state.identities[coordinator]?.workerId;
    if (known !== w.workerId) {
      this.state = {
        ...this.state,
        identities: { ...this.state.identities, [coordinator]: { workerId: w.workerId } },
      };
      this.options.workDir.writeState(this.state);
    }
    log.info(
      `connected to ${coordinator} as ${w.workerId}${known === w.workerId ? ' (re-attached)' : ''}`,
    );
    if (w.heartbeatMs !== this.heartbeatMs) {
      this.heartbeatMs = w.heartbeatMs;
      if (this.heartbeatTimer) this.startHeartbeats();
    }
    // Tell the coordinator at once that the lease is still being worked on (or learn it is not).
    if (this.session) this.beat();
  }

  private onMessage(m: CoordinatorMessage): void {
    const { log } = this.options;
    switch (m.type) {
      case 'lease.revoke':
        if (this.session?.leaseId === m.leaseId) this.session.lose(`revoked: ${m.reason}`);
        return;
      case 'heartbeat.ack':
        return;
      case 'error':
        if (
          m.inReplyTo === 'heartbeat' &&
          (m.code === 'lease_expired' || m.code === 'unknown_lease')
        ) {
          this.session?.lose(m.message);
          return;
        }
        log.warn(
          `the coordinator reported: ${m.message} (${m.code}${m.inReplyTo ? `, in reply to ${m.inReplyTo}` : ''})`,
        );
        return;
      default:
        log.warn(`ignoring an unexpected ${m.type} frame`);
    }
  }

  private beat(): void {
    const hb = this.session?.heartbeat();
    if (hb) this.conn.send(hb);
  }

  private startHeartbeats(): void {
    this.stopHeartbeats();
    this.heartbeatTimer = setInterval(() => this.beat(), this.heartbeatMs);
  }

  private stopHeartbeats(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  /** Checkpoint files no recorded lease refers to (left by a killed process). */
  private removeStrayCheckpoints(): void {
    const ck = this.state.lease?.checkpoint;
    const keep = [ck?.file, ck?.optimizer?.file].filter((f) => f !== undefined);
    const dir = this.options.workDir.checkpointDir;
    for (const name of readdirSync(dir)) {
      if (keep.some((f) => path.join('checkpoints', name) === path.normalize(f))) continue;
      rmSync(path.join(dir, name), { force: true });
    }
  }
}
