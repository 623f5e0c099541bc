/**
 * One lease, from grant to completion: download and verify the shard (and the checkpoint to
 * resume from, or the DDPM checkpoint to convert), build the DiT and its objective, train with
 * deterministic batches, and every `checkpointInterval` steps (and at the target) save a
 * safetensors checkpoint, upload it through a presigned PUT and commit it with its sha256.
 *
 * It composes {@link chooseResume} (where training starts), {@link TrainingLoop} (the training
 * policy) and {@link CheckpointUpload} (getting checkpoints accepted).
 *
 * Training goes on while the coordinator is unreachable; the newest checkpoint made meanwhile
 * waits (in memory and in the work dir) until the connection is back. A revoked or expired lease
 * stops training after the current step. A graceful stop checkpoints, uploads and releases.
 * The volunteer's controls ({@link Controls}) act between steps: a pause waits there (heartbeats
 * go on, saying `paused`), a finish trains on to the next checkpoint step and stops there, and an
 * RSS above the memory ceiling stops at once (what is checkpointed already is uploaded).
 * Checkpoints are only ever made at multiples of the checkpoint interval and at the target (the
 * coordinator refuses any other step): a stop in between trains on to the next such step when it
 * is near, and otherwise keeps the last one.
 */
import { type Heartbeat, isCheckpointStep, type LeaseGrant } from '@archipelago/protocol';
import { CheckpointFiles } from './checkpoint-files.js';
import { CheckpointUpload } from './checkpoint-upload.js';
import type { Connection } from './connection.js';
import type { Controls } from './controls.js';
import type { ObjectCache } from './object-cache.js';
import type { Reporter } from './reporter.js';
import {
  chooseResume,
  describeResume,
  type Orphan,
  readLocalCheckpoint,
  resumeInit,
} from './resume.js';
import { ShardBatches } from './shard-batches.js';
import { IDLE_RATES, TrainingLoop } from './training-loop.js';
import type { SavedLease, WorkDir } from './work-dir.js';

export interface SessionContext {
  coordinator: string;
  conn: Connection;
  log: Reporter;
  workDir: WorkDir;
  cache: ObjectCache;
  /** Data-parallel worker threads of the trainer. */
  threads: number;
  /** Persist the held lease (null: none). */
  saveLease: (lease: SavedLease | null) => void;
  /** A graceful stop was asked for (SIGINT/SIGTERM). */
  stopping: () => boolean;
  /** The coordinator refused this worker for good (token revoked). */
  refused: () => boolean;
  /** Aborted on a stop request or a refusal: wakes up waits. */
  shutdown: AbortSignal;
  /** The volunteer's pause, finish and memory ceiling. */
  controls: Controls;
  /** The RSS went above the memory ceiling (MiB): the worker stops, exiting with its code. */
  overMemory: (mb: number) => void;
  /** Time allowed after a stop request to upload the last checkpoint. Default 30 s. */
  stopGraceMs?: number;
}

/**
 * How a session ended: `completed` (final checkpoint accepted), `lost` (revoked or expired),
 * `stopped` (graceful stop), `refused` (token revoked), `failed` (could not train; released).
 */
export type SessionOutcome = 'completed' | 'lost' | 'stopped' | 'refused' | 'failed';

export class LeaseSession {
  readonly grant: LeaseGrant;
  /** Set when the lease was lost with steps trained past the accepted checkpoint. */
  leftover: Orphan | null = null;
  /** Kept after the trainer is disposed, for its step count. */
  private loop: TrainingLoop | null = null;
  /** The step training starts from (known before the trainer is built). */
  private startStep: number;
  private readonly files: CheckpointFiles;
  private readonly upload: CheckpointUpload;
  private readonly lostController = new AbortController();
  private lostReason: string | null = null;
  /** No more heartbeats (released or finished). */
  private ended = false;
  private warnedLost = false;
  /** The RSS (MiB) that went above the memory ceiling: stop without training on. */
  private overMemoryMb: number | null = null;

  constructor(
    private readonly ctx: SessionContext,
    grant: LeaseGrant,
    private readonly saved?: SavedLease,
    private readonly orphan?: Orphan | null,
  ) {
    this.grant = grant;
    this.startStep = saved?.checkpoint?.step ?? grant.resumeFrom?.step ?? 0;
    this.files = new CheckpointFiles(ctx.workDir, grant.leaseId);
    this.upload = new CheckpointUpload({
      leaseId: grant.leaseId,
      targetSteps: grant.training.targetSteps,
      conn: ctx.conn,
      log: ctx.log,
      accepted: saved
        ? { step: saved.acceptedStep, sha256: null }
        : {
            step: grant.resumeFrom?.step ?? null,
            sha256: grant.resumeFrom?.checkpoint.sha256 ?? null,
          },
      remove: (file) => this.files.remove(file),
      persist: () => this.persist(),
      lose: (reason) => this.lose(reason),
    });
  }

  get leaseId(): string {
    return this.grant.leaseId;
  }

  private get label(): string {
    return `expert ${this.grant.expert.cluster} (${this.grant.objective})`;
  }

  /** Steps trained so far (kept after the trainer is disposed). */
  get step(): number {
    return this.loop?.step ?? this.startStep;
  }

  /** The heartbeat to send now, or null once the lease is ended. */
  heartbeat(): Heartbeat | null {
    // After the final checkpoint is accepted the lease is complete: nothing left to renew.
    if (this.ended || this.lostReason !== null || this.upload.finalCheckpointId !== null)
      return null;
    const { loss, imagesPerSec } = this.loop?.rates ?? IDLE_RATES;
    const paused = this.ctx.controls.paused;
    return {
      type: 'heartbeat',
      leaseId: this.leaseId,
      step: this.step,
      loss: loss !== null && Number.isFinite(loss) ? loss : null,
      imagesPerSec: !paused && Number.isFinite(imagesPerSec) ? Math.max(0, imagesPerSec) : 0,
      // Only while paused: a worker that never pauses sends the frames it always sent.
      ...(paused ? { paused: true } : {}),
    };
  }

  /** The coordinator revoked or expired the lease: stop after the current step. */
  lose(reason: string): void {
    if (this.lostReason !== null || this.ended || this.upload.finalCheckpointId !== null) return;
    this.lostReason = reason;
    this.lostController.abort(new Error(reason));
  }

  async run(): Promise<SessionOutcome> {
    const g = this.grant;
    const { log } = this.ctx;
    log.info(
      `${this.saved ? 're-attached to' : 'leased'} ${this.label} of run ${g.expert.runId}: steps ${this.startStep} -> ${g.training.targetSteps}, checkpoint every ${g.training.checkpointInterval} (lease ${g.leaseId})`,
    );
    this.persist();
    let outcome: SessionOutcome;
    try {
      await this.prepare();
      outcome = await this.train();
      if (outcome === 'lost') {
        this.warnLost();
        await this.keepLeftover();
      }
    } catch (err) {
      outcome = await this.fail(err as Error);
    } finally {
      log.endProgress();
      await this.loop?.dispose().catch(() => {});
    }
    if (outcome === 'lost') this.warnLost();
    // Keep the lease and its checkpoint only when a stop left an upload undone: a restart
    // within the lease TTL re-attaches and uploads it.
    if (!(outcome === 'stopped' && this.upload.pending && !this.ended)) {
      this.ended = true;
      this.ctx.saveLease(null);
      this.files.removeAll();
    }
    return outcome;
  }

  /** Download the shard and the checkpoint to start from, and build the trainer. */
  private async prepare(): Promise<void> {
    const g = this.grant;
    const { cache, log } = this.ctx;
    const shard = await cache.get(g.shard.train, `the shard of ${this.label}`, true);
    if (this.interrupted()) return;
    const batches = ShardBatches.forGrant(g, shard);

    const local = readLocalCheckpoint(
      this.saved,
      g,
      (file) => this.files.read(file),
      (m) => log.warn(m),
    );
    const point = chooseResume(g, this.saved, this.orphan, local);
    this.startStep = point.step;
    // A checkpoint at a step the coordinator refuses (written by an older worker, or what a lost
    // lease trained to) still starts training; it is never uploaded.
    const uploadable = (step: number) =>
      isCheckpointStep(step, g.training.checkpointInterval, g.training.targetSteps);
    if (point.kind === 'local' && (point.checkpoint.ck.accepted || uploadable(point.step)))
      this.upload.restore(point.checkpoint);
    if (point.kind === 'orphan' && uploadable(point.step)) {
      const o = point.orphan;
      this.upload.restore(this.files.write(o.step, o.bytes, o.final, o.optimizer));
    }
    const start = await resumeInit(point, cache, (m) => log.warn(m));
    if (this.interrupted()) return;

    this.loop = await TrainingLoop.create(g, batches, {
      threads: this.ctx.threads,
      warn: (m) => log.warn(m),
      ...start,
    });
    if (this.loop.step !== this.startStep) {
      throw new Error(
        `the checkpoint to start from is at step ${this.loop.step}, the lease says ${this.startStep}`,
      );
    }
    log.info(
      `${this.startStep > 0 ? `resuming ${this.label} from step ${this.startStep}` : `starting ${this.label}`}: ${describeResume(point)}; ${batches.set.count} images, ${g.model.preset} DiT, batch ${g.training.batchSize}, ${this.loop.threads} thread(s)`,
    );
  }

  private warnLost(): void {
    if (this.warnedLost) return;
    this.warnedLost = true;
    this.ctx.log.warn(
      `lost the lease of ${this.label} at step ${this.step}: ${this.lostReason}; the coordinator resumes it from step ${this.upload.acceptedStep ?? 0}`,
    );
  }

  /** The lease was lost: keep what was trained past the accepted checkpoint for a re-grant. */
  private async keepLeftover(): Promise<void> {
    const loop = this.loop;
    const base = this.upload.acceptedStep ?? 0;
    if (!loop || loop.step <= base) return;
    const step = loop.step;
    const pending = this.upload.pending;
    const saved =
      pending?.ck.step === step
        ? { bytes: pending.bytes, optimizer: pending.optimizer }
        : await loop.saveResumable();
    this.leftover = {
      expertId: this.grant.expert.id,
      baseStep: base,
      baseSha256: this.upload.acceptedSha256,
      step,
      final: step === this.grant.training.targetSteps,
      bytes: saved.bytes,
      ...(saved.optimizer ? { optimizer: saved.optimizer } : {}),
    };
    this.ctx.log.info(
      `keeping the ${step - base} steps trained since step ${base}: if ${this.label} is granted again from step ${base}, training continues from step ${step}`,
    );
  }

  private interrupted(): boolean {
    return this.lostReason !== null || this.ctx.refused() || this.ctx.stopping();
  }

  private async train(): Promise<SessionOutcome> {
    const loop = this.loop;
    await this.waitWhilePaused();
    await loop?.run({
      interrupted: () => this.interrupted() || this.finishedCheckpoint(),
      onStep: () => this.showProgress(),
      checkpoint: (final) => this.checkpoint(final),
      betweenSteps: async () => {
        if (this.upload.due) await this.upload.flush();
        await this.waitOfflineAtCheckpoint();
        this.checkMemory();
        await this.waitWhilePaused();
      },
    });
    // The final checkpoint was accepted: the coordinator completed the lease with it, so an
    // answer that calls the lease ended (a heartbeat racing the commit) is not a loss.
    if (this.upload.finalCheckpointId) return this.complete();
    if (this.lostReason !== null) return 'lost';
    if (this.ctx.refused()) return 'refused';
    if (loop && loop.step >= this.grant.training.targetSteps && !this.ctx.stopping()) {
      const done = await this.finish();
      if (done) return done;
    }
    return this.stop();
  }

  /** Finishing, and the current step is checkpointed (accepted, or offered for upload). */
  private finishedCheckpoint(): boolean {
    return this.ctx.controls.finishing && this.step <= this.upload.coveredStep;
  }

  /** Above the memory ceiling: stop now (the worker exits with its code once released). */
  private checkMemory(): void {
    if (this.overMemoryMb !== null) return;
    const mb = this.ctx.controls.overMemory();
    if (mb === null) return;
    this.overMemoryMb = mb;
    this.ctx.overMemory(mb);
  }

  /**
   * Paused by the volunteer: wait here, between steps, until resumed (heartbeats go on, saying
   * `paused`; a checkpoint waiting to upload still uploads). A stop, a finish (which resumes) or a
   * lost lease ends the wait.
   */
  private async waitWhilePaused(): Promise<void> {
    const { controls, log } = this.ctx;
    if (!controls.paused || this.interrupted()) return;
    log.info(
      `paused at step ${this.step} of ${this.label}: the lease is kept while paused (up to the coordinator's paused-lease grace); resume with \`worker resume\` or SIGUSR2`,
    );
    this.showProgress('paused');
    const signal = AbortSignal.any([this.lostController.signal, this.ctx.shutdown]);
    while (controls.paused && !this.interrupted()) {
      if (this.upload.due) await this.upload.flush();
      await controls.waitForChange(1000, signal);
    }
    if (this.interrupted()) return;
    this.loop?.restartClock();
    log.info(`resumed at step ${this.step} of ${this.label}`);
  }

  /**
   * Offline with the checkpoint of this very step waiting: steps trained on could not be made
   * durable before the coordinator is back, and would be lost with the lease if the outage
   * outlasted it (the chaos run, apps/worker/test/chaos/, lost three intervals so), so training
   * waits here for the connection: at most one checkpoint interval is at stake.
   */
  private async waitOfflineAtCheckpoint(): Promise<void> {
    const pending = this.upload.pending;
    if (this.ctx.conn.ready || !pending || pending.ck.final || pending.ck.step !== this.step)
      return;
    const signal = AbortSignal.any([this.lostController.signal, this.ctx.shutdown]);
    this.ctx.log.info(
      `offline: training waits at step ${pending.ck.step} until its checkpoint can be uploaded`,
    );
    await this.ctx.conn.waitReady(signal).catch(() => {});
    if (this.upload.due && !this.interrupted()) await this.upload.flush();
  }

  private showProgress(note?: string): void {
    const target = this.grant.training.targetSteps;
    const step = this.step;
    const { loss, imagesPerSec, stepsPerSec } = this.loop?.rates ?? IDLE_RATES;
    this.ctx.log.progress(
      {
        cluster: this.grant.expert.cluster,
        objective: this.grant.objective,
        step,
        target,
        loss,
        imagesPerSec,
        etaSeconds: stepsPerSec > 0 ? (target - step) / stepsPerSec : null,
        ...(note ? { note } : this.ctx.conn.ready ? {} : { note: 'offline' }),
      },
      this.leaseId,
    );
  }

  /**
   * Save a checkpoint of the current step (a non-final one with its optimiser state, for an exact
   * resume); it replaces any older one still waiting to upload.
   */
  private async checkpoint(final: boolean): Promise<void> {
    const loop = this.loop!;
    const step = loop.step;
    if (final) {
      this.upload.offer(this.files.write(step, await loop.save(), true));
      return;
    }
    const { bytes, optimizer } = await loop.saveResumable();
    this.upload.offer(this.files.write(step, bytes, false, optimizer));
  }

  /** At the target: get the final checkpoint accepted, then confirm the lease complete. */
  private async finish(): Promise<SessionOutcome | null> {
    const signal = AbortSignal.any([this.lostController.signal, this.ctx.shutdown]);
    const onOffline = () => this.showProgress('offline: waiting to upload the final checkpoint');
    let attempts = 0;
    for (;;) {
      if (this.upload.finalCheckpointId) return this.complete();
      if (this.lostReason !== null) return 'lost';
      if (this.ctx.refused()) return 'refused';
      if (this.ctx.stopping()) return null;
      if (!this.upload.pending) {
        // The final checkpoint was rejected: write it again, a few times at most.
        if (++attempts > 3) throw new Error('the final checkpoint was rejected three times');
        await this.checkpoint(true);
      }
      await this.upload.advance(signal, { onOffline });
    }
  }

  private complete(): SessionOutcome {
    this.ended = true;
    this.ctx.conn.send({
      type: 'lease.complete',
      leaseId: this.leaseId,
      checkpointId: this.upload.finalCheckpointId!,
    });
    this.ctx.log.info(
      `${this.label} is done: ${this.grant.training.targetSteps} steps, final loss ${this.loop?.rates.loss?.toFixed(4) ?? '-'}`,
    );
    return 'completed';
  }

  /**
   * Graceful stop: checkpoint what was trained since the last accepted step (at the next
   * checkpoint step, see {@link trainToCheckpointStep}), upload, release.
   */
  private async stop(): Promise<SessionOutcome> {
    const { conn, log, controls } = this.ctx;
    await this.trainToCheckpointStep();
    const step = this.step;
    const deadline = Date.now() + (this.ctx.stopGraceMs ?? 30_000);
    // A finish waits for its checkpoint to be accepted as long as the lease lasts (a stop signal
    // puts it back on the stop's grace).
    const finishing = () => controls.finishing && !this.ctx.stopping();
    while (this.upload.pending && this.lostReason === null && !this.ctx.refused()) {
      if (finishing()) {
        const signal = AbortSignal.any([this.lostController.signal, this.ctx.shutdown]);
        await this.upload.advance(signal);
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      const signal = AbortSignal.any([this.lostController.signal, AbortSignal.timeout(left)]);
      await this.upload.advance(signal, { maxWaitMs: left });
    }
    if (this.upload.finalCheckpointId) return this.complete();
    if (this.lostReason !== null) return 'lost';
    if (conn.ready && !this.ctx.refused()) {
      await this.release(`worker stopped at step ${step}`);
      log.info(
        `released the lease of ${this.label}; it resumes from step ${this.upload.acceptedStep ?? 0}`,
      );
      return 'stopped';
    }
    const pending = this.upload.pending;
    if (pending) {
      log.warn(
        `offline: the checkpoint of step ${pending.ck.step} stays in ${this.ctx.workDir.root}; restarting this worker soon re-attaches the lease and uploads it`,
      );
    }
    return 'stopped';
  }

  /**
   * A stop between checkpoint steps: train on to the next one (a multiple of the interval, or the
   * target) and checkpoint there when the current pace gets there within half the stop's grace
   * time; otherwise the steps since the last checkpoint are let go (the coordinator resumes the
   * expert from its last accepted checkpoint).
   */
  private async trainToCheckpointStep(): Promise<void> {
    const loop = this.loop;
    const { log } = this.ctx;
    const covered = this.upload.coveredStep;
    if (!loop || this.lostReason !== null || this.ctx.refused()) return;
    if (loop.step <= covered) {
      log.info(
        `${this.ctx.controls.finishing ? 'finishing' : 'stopping'} at step ${loop.step}: its checkpoint of step ${covered} is saved already`,
      );
      return;
    }
    const { checkpointInterval: interval, targetSteps: target } = this.grant.training;
    const next = Math.min(target, Math.ceil(loop.step / interval) * interval);
    const save = async (final: boolean) => {
      log.info(`stopping: saving a checkpoint of step ${loop.step}`);
      await this.checkpoint(final);
    };
    if (next === loop.step) return save(next === target);
    // Paused or above the memory ceiling: the volunteer wants the machine back, train no further.
    if (this.ctx.controls.paused || this.overMemoryMb !== null) {
      log.info(
        `stopping at step ${loop.step} without training on (${this.overMemoryMb !== null ? 'above the memory ceiling' : 'paused'}): the steps since step ${covered} are let go`,
      );
      return;
    }
    const { stepsPerSec } = loop.rates;
    const budgetMs = (this.ctx.stopGraceMs ?? 30_000) / 2;
    if (!(stepsPerSec > 0 && ((next - loop.step) / stepsPerSec) * 1000 <= budgetMs)) {
      log.info(
        `stopping at step ${loop.step}: the next checkpoint step (${next}) is too far to reach now; the steps since step ${covered} are let go`,
      );
      return;
    }
    log.info(`stopping: training on to step ${next}, the next checkpoint step`);
    await loop.run({
      interrupted: () => this.lostReason !== null || this.ctx.refused() || loop.step >= next,
      onStep: () => this.showProgress('stopping'),
      checkpoint: save,
      betweenSteps: async () => {},
    });
  }

  /** Send lease.release and wait until the coordinator has handled it. */
  private async release(reason: string): Promise<void> {
    this.ended = true;
    const { conn } = this.ctx;
    if (!conn.send({ type: 'lease.release', leaseId: this.leaseId, reason })) return;
    // Frames are handled in order: the answer to a heartbeat sent after the release (an error,
    // the lease being released) means the release was handled.
    await conn
      .request(
        { type: 'heartbeat', leaseId: this.leaseId, step: this.step, loss: null, imagesPerSec: 0 },
        ['heartbeat.ack'],
        5000,
      )
      .catch(() => {});
  }

  private async fail(err: Error): Promise<SessionOutcome> {
    if (this.lostReason !== null) return 'lost';
    if (this.ctx.refused()) return 'refused';
    this.ctx.log.error(`cannot train ${this.label}: ${err.message}`);
    if (this.ctx.conn.ready) await this.release(`worker error: ${err.message.slice(0, 400)}`);
    return 'failed';
  }

  /** Record the lease and its latest local checkpoint, for a restart to re-attach. */
  private persist(): void {
    if (this.ended) return;
    this.ctx.saveLease({
      coordinator: this.ctx.coordinator,
      leaseId: this.leaseId,
      expertId: this.grant.expert.id,
      grant: this.grant,
      step: this.step,
      acceptedStep: this.upload.acceptedStep,
      checkpoint: this.upload.localCheckpoint,
    });
  }
}
