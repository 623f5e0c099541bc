/**
 * One lease, from grant to completion: download and verify the shard (and the checkpoint to
 * resume from, or the DDPM checkpoint to convert), build the DiT and its objective, train with
 * deterministic batches, and every `checkpointInterval` steps (and at the target) save a
 * safetensors checkpoint, upload it through a presigned PUT and commit it with its sha256.
 *
 * Training goes on while the coordinator is unreachable; the newest checkpoint made meanwhile
 * waits (in memory and in the work dir) until the connection is back. A revoked or expired lease
 * stops training after the current step. A graceful stop checkpoints, uploads and releases.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { decodeShard } from '@archipelago/data';
import type { ObjectiveConfig } from '@archipelago/diffusion';
import {
  convertDdpmToFm,
  ditConfigFromPreset,
  ExpertTrainer,
  type TrainStepResult,
} from '@archipelago/models';
import type { Heartbeat, LeaseGrant } from '@archipelago/protocol';
import { Backoff } from './backoff.js';
import { type Connection, DisconnectedError, RequestError } from './connection.js';
import { type ObjectCache, sha256Hex } from './object-cache.js';
import type { Reporter } from './reporter.js';
import { ShardBatches } from './shard-batches.js';
import type { LocalCheckpoint, SavedLease, WorkDir } from './work-dir.js';

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
  /** Time allowed after a stop request to upload the last checkpoint. Default 30 s. */
  stopGraceMs?: number;
}

/**
 * How a session ended: `completed` (final checkpoint accepted), `lost` (revoked or expired),
 * `stopped` (graceful stop), `refused` (token revoked), `failed` (could not train; released).
 */
export type SessionOutcome = 'completed' | 'lost' | 'stopped' | 'refused' | 'failed';

/**
 * What a lost lease had trained beyond its last accepted checkpoint (a coordinator outage longer
 * than the lease TTL, say). When the same expert is granted again from the same checkpoint, the
 * next session starts from here instead of redoing the steps.
 */
export interface Orphan {
  expertId: string;
  /** The accepted checkpoint the lost lease started from: a new grant must resume from it too. */
  baseStep: number;
  baseSha256: string | null;
  step: number;
  final: boolean;
  bytes: Uint8Array;
}

interface PendingCheckpoint {
  ck: LocalCheckpoint;
  bytes: Uint8Array;
}

type UploadResult = 'accepted' | 'superseded' | 'rejected' | 'retry' | 'lost';

const MB = 1024 * 1024;
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** EMA decay of the weights a checkpoint holds (see ExpertTrainer's `ema`). */
export const EMA_DECAY = 0.999;

/**
 * Linear warm-up of the learning rate over the first 10 % of the steps (at most 100): Adam's early
 * updates at a high rate destabilise a freshly initialised transformer. A function of the step
 * alone, so a resumed lease continues the same schedule.
 */
export function warmupLearningRate(base: number, step: number, target: number): number {
  const warmup = Math.max(1, Math.min(100, Math.ceil(target / 10)));
  return base * Math.min(1, (step + 1) / warmup);
}

export class LeaseSession {
  readonly grant: LeaseGrant;
  private trainer: ExpertTrainer | null = null;
  private batches: ShardBatches | null = null;
  private startStep: number;
  private acceptedStep: number | null;
  /** sha256 of the accepted checkpoint of `acceptedStep`, when known. */
  private acceptedSha: string | null;
  /** Set when the lease was lost with steps trained past the accepted checkpoint. */
  leftover: Orphan | null = null;
  private pending: PendingCheckpoint | null = null;
  private acceptedLocal: LocalCheckpoint | null = null;
  private finalCheckpointId: string | null = null;
  private finalAttempts = 0;
  private nextUploadAt = 0;
  private readonly uploadBackoff = new Backoff(1000, 30_000);
  private readonly lostController = new AbortController();
  private lostReason: string | null = null;
  /** No more heartbeats (released or finished). */
  private ended = false;
  private loss: number | null = null;
  private imagesPerSec = 0;
  private stepsPerSec = 0;
  private lastStepAt = 0;
  private lastStep: number | null = null;
  private warnedLost = false;

  constructor(
    private readonly ctx: SessionContext,
    grant: LeaseGrant,
    private readonly saved?: SavedLease,
    private readonly orphan?: Orphan | null,
  ) {
    this.grant = grant;
    this.startStep = saved?.checkpoint?.step ?? grant.resumeFrom?.step ?? 0;
    this.acceptedStep = saved ? saved.acceptedStep : (grant.resumeFrom?.step ?? null);
    this.acceptedSha = saved ? null : (grant.resumeFrom?.checkpoint.sha256 ?? null);
  }

  get leaseId(): string {
    return this.grant.leaseId;
  }

  private get label(): string {
    return `expert ${this.grant.expert.cluster} (${this.grant.objective})`;
  }

  /** Steps trained so far (kept after the trainer is disposed). */
  get step(): number {
    return this.trainer?.stepCount ?? this.lastStep ?? this.startStep;
  }

  /** The heartbeat to send now, or null once the lease is ended. */
  heartbeat(): Heartbeat | null {
    // After the final checkpoint is accepted the lease is complete: nothing left to renew.
    if (this.ended || this.lostReason !== null || this.finalCheckpointId !== null) return null;
    return {
      type: 'heartbeat',
      leaseId: this.leaseId,
      step: this.step,
      loss: this.loss !== null && Number.isFinite(this.loss) ? this.loss : null,
      imagesPerSec: Number.isFinite(this.imagesPerSec) ? Math.max(0, this.imagesPerSec) : 0,
    };
  }

  /** The coordinator revoked or expired the lease: stop after the current step. */
  lose(reason: string): void {
    if (this.lostReason !== null || this.ended || this.finalCheckpointId !== null) return;
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
      await this.trainer?.dispose().catch(() => {});
      this.trainer = null;
    }
    if (outcome === 'lost') this.warnLost();
    // Keep the lease and its checkpoint only when a stop left an upload undone: a restart
    // within the lease TTL re-attaches and uploads it.
    if (!(outcome === 'stopped' && this.pending && !this.ended)) {
      this.ended = true;
      this.ctx.saveLease(null);
      this.removeLocalCheckpoints();
    }
    return outcome;
  }

  // -------------------------------------------------------------------------------------------
  // Setup
  // -------------------------------------------------------------------------------------------

  private async prepare(): Promise<void> {
    const g = this.grant;
    const { cache, log } = this.ctx;
    const shardBytes = await cache.get(g.shard.train, `the shard of ${this.label}`, true);
    if (this.interrupted()) return;
    const set = decodeShard(shardBytes, { file: `shard ${g.shard.train.sha256.slice(0, 12)}` });
    if (
      set.height !== g.model.imageSize ||
      set.width !== g.model.imageSize ||
      set.channels !== g.model.channels
    ) {
      throw new Error(
        `the shard holds ${set.height}x${set.width}x${set.channels} images, the model expects ${g.model.imageSize}x${g.model.imageSize}x${g.model.channels}`,
      );
    }
    this.batches = new ShardBatches(set, {
      batchSize: g.training.batchSize,
      seed: g.training.seed,
      numClasses: g.model.numClasses,
    });

    let init: Uint8Array | undefined;
    let from = 'random initialisation';
    const local = this.localResume();
    if (local) {
      init = local.bytes;
      this.startStep = local.ck.step;
      from = `its local checkpoint of step ${local.ck.step}`;
      if (local.ck.accepted) this.acceptedLocal = local.ck;
      else this.pending = local;
    } else if (this.orphanMatches()) {
      const o = this.orphan!;
      init = o.bytes;
      this.startStep = o.step;
      const file = this.fileOf(o.step);
      this.ctx.workDir.writeAtomic(this.ctx.workDir.resolve(file), o.bytes);
      const ck = { file, step: o.step, sha256: sha256Hex(o.bytes), bytes: o.bytes.byteLength };
      this.pending = { ck: { ...ck, final: o.final, accepted: false }, bytes: o.bytes };
      from = `the checkpoint of step ${o.step} it trained from step ${o.baseStep} before its previous lease of this expert was lost`;
    } else if (this.saved && (this.acceptedStep ?? 0) > (g.resumeFrom?.step ?? 0)) {
      throw new Error(
        `the local checkpoint of the re-attached lease is gone and the grant's resume point (step ${g.resumeFrom?.step ?? 0}) is older than the accepted step ${this.acceptedStep}; releasing the lease so that it is granted afresh`,
      );
    } else if (g.resumeFrom) {
      this.startStep = g.resumeFrom.step;
      init = await cache.get(
        g.resumeFrom.checkpoint,
        `the checkpoint of step ${g.resumeFrom.step}`,
        false,
      );
      from = `the accepted checkpoint of step ${g.resumeFrom.step} (sha256 ${g.resumeFrom.checkpoint.sha256.slice(0, 12)})`;
    } else if (g.initFrom) {
      this.startStep = 0;
      const ddpm = await cache.get(g.initFrom.checkpoint, 'the DDPM checkpoint to convert', false);
      init = await convertDdpmToFm(ddpm);
      from = `DDPM checkpoint ${g.initFrom.checkpoint.sha256.slice(0, 12)} converted to flow matching`;
    } else {
      this.startStep = 0;
    }
    if (this.interrupted()) return;

    const config = ditConfigFromPreset(g.model.preset, {
      imageSize: g.model.imageSize,
      channels: g.model.channels,
      numClasses: g.model.numClasses,
      ...(g.model.patchSize !== undefined ? { patchSize: g.model.patchSize } : {}),
    });
    const objective: ObjectiveConfig =
      g.objective === 'ddpm'
        ? { name: 'ddpm', schedule: { kind: g.schedule ?? 'cosine' } }
        : { name: 'fm', timeSampling: { kind: g.timeSampling ?? 'uniform' } };
    this.trainer = await ExpertTrainer.create({
      network: { kind: 'dit', config },
      objective,
      optimizer: { learningRate: g.training.learningRate },
      // Checkpoints hold the EMA of the weights: what diffusion models sample well with.
      ema: { decay: EMA_DECAY },
      seed: g.training.seed,
      threads: this.ctx.threads,
      ...(init ? { init } : {}),
    });
    if (this.trainer.stepCount !== this.startStep) {
      throw new Error(
        `the checkpoint to start from is at step ${this.trainer.stepCount}, the lease says ${this.startStep}`,
      );
    }
    log.info(
      `${this.startStep > 0 ? `resuming ${this.label} from step ${this.startStep}` : `starting ${this.label}`}: ${from}; ${set.count} images, ${g.model.preset} DiT, batch ${g.training.batchSize}, ${this.trainer.threads} thread(s)`,
    );
  }

  /** The checkpoint a re-attached lease left in the work dir, if it is intact and usable. */
  private localResume(): PendingCheckpoint | null {
    const ck = this.saved?.checkpoint;
    if (!ck) return null;
    try {
      const bytes = new Uint8Array(readFileSync(this.ctx.workDir.resolve(ck.file)));
      if (sha256Hex(bytes) !== ck.sha256) throw new Error('sha256 mismatch');
      if (ck.step < (this.grant.resumeFrom?.step ?? 0)) throw new Error('older than the lease');
      return { ck: { ...ck }, bytes };
    } catch (err) {
      this.ctx.log.warn(
        `ignoring the local checkpoint of step ${ck.step} (${(err as Error).message})`,
      );
      return null;
    }
  }

  private warnLost(): void {
    if (this.warnedLost) return;
    this.warnedLost = true;
    this.ctx.log.warn(
      `lost the lease of ${this.label} at step ${this.step}: ${this.lostReason}; the coordinator resumes it from step ${this.acceptedStep ?? 0}`,
    );
  }

  /** The previous lease's leftover continues this grant: same expert, same starting checkpoint. */
  private orphanMatches(): boolean {
    const o = this.orphan;
    const g = this.grant;
    if (!o || o.expertId !== g.expert.id || this.saved) return false;
    if ((g.resumeFrom?.step ?? 0) !== o.baseStep || o.step <= o.baseStep) return false;
    return (
      !g.resumeFrom || o.baseSha256 === null || o.baseSha256 === g.resumeFrom.checkpoint.sha256
    );
  }

  /** The lease was lost: keep what was trained past the accepted checkpoint for a re-grant. */
  private async keepLeftover(): Promise<void> {
    const trainer = this.trainer;
    const base = this.acceptedStep ?? 0;
    if (!trainer || trainer.stepCount <= base) return;
    const step = trainer.stepCount;
    const bytes =
      this.pending?.ck.step === step
        ? this.pending.bytes
        : await trainer.save({ dataFingerprint: this.grant.shard.train.sha256 });
    this.leftover = {
      expertId: this.grant.expert.id,
      baseStep: base,
      baseSha256: this.acceptedSha,
      step,
      final: step === this.grant.training.targetSteps,
      bytes,
    };
    this.ctx.log.info(
      `keeping the ${step - base} steps trained since step ${base}: if ${this.label} is granted again from step ${base}, training continues from step ${step}`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Training
  // -------------------------------------------------------------------------------------------

  private interrupted(): boolean {
    return this.lostReason !== null || this.ctx.refused() || this.ctx.stopping();
  }

  private async train(): Promise<SessionOutcome> {
    const { conn } = this.ctx;
    const { targetSteps: target, checkpointInterval: interval } = this.grant.training;
    const trainer = this.trainer;
    const batches = this.batches;
    if (trainer && batches) {
      this.lastStepAt = performance.now();
      while (!this.interrupted() && trainer.stepCount < target) {
        const batch = batches.batch(trainer.stepCount);
        trainer.learningRate = warmupLearningRate(
          this.grant.training.learningRate,
          trainer.stepCount,
          target,
        );
        const result = await trainer.step(batch.x, batch.labels);
        this.afterStep(result);
        if (result.step % interval === 0 || result.step === target)
          await this.checkpoint(result.step === target);
        if (this.pending && conn.ready && Date.now() >= this.nextUploadAt) await this.flush();
        // Steps are synchronous tfjs work: let heartbeats and socket frames through.
        await new Promise(setImmediate);
      }
    }
    // The final checkpoint was accepted: the coordinator completed the lease with it, so an
    // answer that calls the lease ended (a heartbeat racing the commit) is not a loss.
    if (this.finalCheckpointId) return this.complete();
    if (this.lostReason !== null) return 'lost';
    if (this.ctx.refused()) return 'refused';
    if (trainer && trainer.stepCount >= target && !this.ctx.stopping()) {
      const done = await this.finish();
      if (done) return done;
    }
    return this.stop();
  }

  private afterStep(r: TrainStepResult): void {
    const now = performance.now();
    const seconds = Math.max(1e-6, (now - this.lastStepAt) / 1000);
    this.lastStepAt = now;
    // Exponential moving averages: smooth enough to read, quick to follow a change of load.
    const a = this.stepsPerSec === 0 ? 1 : 0.1;
    this.stepsPerSec = (1 - a) * this.stepsPerSec + a / seconds;
    this.imagesPerSec = (1 - a) * this.imagesPerSec + a * r.imagesPerSec;
    this.loss = r.loss;
    this.lastStep = r.step;
    this.showProgress();
  }

  private showProgress(note?: string): void {
    const target = this.grant.training.targetSteps;
    const step = this.step;
    this.ctx.log.progress(
      {
        cluster: this.grant.expert.cluster,
        objective: this.grant.objective,
        step,
        target,
        loss: this.loss,
        imagesPerSec: this.imagesPerSec,
        etaSeconds: this.stepsPerSec > 0 ? (target - step) / this.stepsPerSec : null,
        ...(note ? { note } : this.ctx.conn.ready ? {} : { note: 'offline' }),
      },
      this.leaseId,
    );
  }

  /** Save a checkpoint of the current step; it replaces any older one still waiting to upload. */
  private async checkpoint(final: boolean): Promise<void> {
    const trainer = this.trainer!;
    const step = trainer.stepCount;
    const bytes = await trainer.save({ dataFingerprint: this.grant.shard.train.sha256 });
    const file = this.fileOf(step);
    this.ctx.workDir.writeAtomic(this.ctx.workDir.resolve(file), bytes);
    if (this.pending && !this.pending.ck.accepted) {
      this.ctx.log.info(
        `checkpoint of step ${this.pending.ck.step} was not uploaded (offline); step ${step} replaces it`,
      );
      this.removeFile(this.pending.ck.file);
    }
    this.pending = {
      ck: { file, step, sha256: sha256Hex(bytes), bytes: bytes.byteLength, final, accepted: false },
      bytes,
    };
    this.nextUploadAt = 0;
    this.persist();
  }

  /** Upload the waiting checkpoint once, and act on the answer. */
  private async flush(): Promise<void> {
    const p = this.pending;
    if (!p) return;
    const result = await this.upload(p);
    const { log } = this.ctx;
    switch (result) {
      case 'accepted':
      case 'superseded': {
        if (result === 'superseded')
          log.info(`checkpoint of step ${p.ck.step} had already been accepted`);
        p.ck.accepted = true;
        this.acceptedStep = Math.max(this.acceptedStep ?? 0, p.ck.step);
        this.acceptedSha = p.ck.sha256;
        if (this.acceptedLocal) this.removeFile(this.acceptedLocal.file);
        this.acceptedLocal = p.ck;
        this.pending = null;
        this.uploadBackoff.reset();
        this.persist();
        return;
      }
      case 'rejected':
        this.removeFile(p.ck.file);
        this.pending = null;
        this.persist();
        return;
      case 'retry':
        this.nextUploadAt = Date.now() + this.uploadBackoff.next();
        return;
      case 'lost':
        return;
    }
  }

  private async upload(p: PendingCheckpoint): Promise<UploadResult> {
    const { conn, log } = this.ctx;
    const { ck } = p;
    try {
      const url = await conn.request(
        {
          type: 'checkpoint.begin',
          leaseId: this.leaseId,
          step: ck.step,
          bytes: ck.bytes,
          sha256: ck.sha256,
          final: ck.final,
        },
        ['checkpoint.url'],
      );
      const put = await fetch(url.putUrl, {
        method: 'PUT',
        headers: url.headers,
        body: p.bytes,
        signal: AbortSignal.timeout(Math.max(60_000, (ck.bytes / MB) * 2_000)),
      });
      if (!put.ok) {
        log.warn(
          `upload of checkpoint step ${ck.step} failed: HTTP ${put.status} ${(await put.text()).slice(0, 300)}; will retry`,
        );
        return 'retry';
      }
      const reply = await conn.request(
        { type: 'checkpoint.commit', leaseId: this.leaseId, checkpointId: url.checkpointId },
        ['checkpoint.accepted', 'checkpoint.rejected'],
        // The coordinator hashes the stored object before it answers.
        Math.max(30_000, (ck.bytes / MB) * 1_000),
      );
      if (reply.type === 'checkpoint.rejected') {
        log.warn(
          `checkpoint of step ${ck.step} was rejected: ${reply.reason}; the previous resume point stays`,
        );
        return 'rejected';
      }
      log.info(
        `checkpoint of step ${ck.step}/${this.grant.training.targetSteps}${ck.final ? ' (final)' : ''} accepted: ${(ck.bytes / MB).toFixed(1)} MB, sha256 ${ck.sha256.slice(0, 12)}`,
      );
      if (ck.final) this.finalCheckpointId = reply.checkpointId;
      return 'accepted';
    } catch (err) {
      if (err instanceof RequestError) {
        if (err.code === 'lease_expired' || err.code === 'unknown_lease') {
          this.lose(err.message);
          return 'lost';
        }
        if (err.code === 'stale_checkpoint_step') return 'superseded';
        log.warn(`checkpoint of step ${ck.step} was refused: ${err.message} (${err.code})`);
        return 'rejected';
      }
      if (!(err instanceof DisconnectedError))
        log.warn(
          `upload of checkpoint step ${ck.step} failed: ${(err as Error).message}; will retry`,
        );
      return 'retry';
    }
  }

  /** At the target: get the final checkpoint accepted, then confirm the lease complete. */
  private async finish(): Promise<SessionOutcome | null> {
    const { conn } = this.ctx;
    const signal = AbortSignal.any([this.lostController.signal, this.ctx.shutdown]);
    for (;;) {
      if (this.finalCheckpointId) return this.complete();
      if (this.lostReason !== null) return 'lost';
      if (this.ctx.refused()) return 'refused';
      if (this.ctx.stopping()) return null;
      if (!this.pending) {
        // The final checkpoint was rejected: write it again, a few times at most.
        if (++this.finalAttempts > 3)
          throw new Error('the final checkpoint was rejected three times');
        await this.checkpoint(true);
      }
      if (!conn.ready) {
        this.showProgress('offline: waiting to upload the final checkpoint');
        await conn.waitReady(signal).catch(() => {});
        continue;
      }
      if (Date.now() < this.nextUploadAt) {
        await sleep(this.nextUploadAt - Date.now(), signal);
        continue;
      }
      await this.flush();
    }
  }

  private complete(): SessionOutcome {
    this.ended = true;
    this.ctx.conn.send({
      type: 'lease.complete',
      leaseId: this.leaseId,
      checkpointId: this.finalCheckpointId!,
    });
    this.ctx.log.info(
      `${this.label} is done: ${this.grant.training.targetSteps} steps, final loss ${this.loss?.toFixed(4) ?? '-'}`,
    );
    return 'completed';
  }

  /** Graceful stop: checkpoint what was trained since the last accepted step, upload, release. */
  private async stop(): Promise<SessionOutcome> {
    const { conn, log } = this.ctx;
    const target = this.grant.training.targetSteps;
    const step = this.step;
    const covered = Math.max(this.acceptedStep ?? 0, this.pending?.ck.step ?? 0);
    if (this.trainer && step > covered) {
      log.info(`stopping: saving a checkpoint of step ${step}`);
      await this.checkpoint(step === target);
    }
    const deadline = Date.now() + (this.ctx.stopGraceMs ?? 30_000);
    while (this.pending && this.lostReason === null && !this.ctx.refused()) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const signal = AbortSignal.any([this.lostController.signal, AbortSignal.timeout(left)]);
      if (!conn.ready) {
        await conn.waitReady(signal).catch(() => {});
        continue;
      }
      if (Date.now() < this.nextUploadAt) {
        await sleep(Math.min(left, this.nextUploadAt - Date.now()), signal);
        continue;
      }
      await this.flush();
    }
    if (this.finalCheckpointId) return this.complete();
    if (this.lostReason !== null) return 'lost';
    if (conn.ready && !this.ctx.refused()) {
      await this.release(`worker stopped at step ${step}`);
      log.info(
        `released the lease of ${this.label}; it resumes from step ${this.acceptedStep ?? 0}`,
      );
      return 'stopped';
    }
    if (this.pending) {
      log.warn(
        `offline: the checkpoint of step ${this.pending.ck.step} stays in ${this.ctx.workDir.root}; restarting this worker soon re-attaches the lease and uploads it`,
      );
    }
    return 'stopped';
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

  // -------------------------------------------------------------------------------------------
  // Local state
  // -------------------------------------------------------------------------------------------

  private persist(): void {
    if (this.ended) return;
    this.ctx.saveLease({
      coordinator: this.ctx.coordinator,
      leaseId: this.leaseId,
      expertId: this.grant.expert.id,
      grant: this.grant,
      step: this.step,
      acceptedStep: this.acceptedStep,
      checkpoint: this.pending?.ck ?? this.acceptedLocal,
    });
  }

  private fileOf(step: number): string {
    return `checkpoints/${this.leaseId}-${String(step).padStart(9, '0')}.safetensors`;
  }

  private removeFile(relative: string): void {
    rmSync(this.ctx.workDir.resolve(relative), { force: true });
  }

  private removeLocalCheckpoints(): void {
    for (const name of readdirSync(this.ctx.workDir.checkpointDir)) {
      if (name.startsWith(`${this.leaseId}-`))
        rmSync(path.join(this.ctx.workDir.checkpointDir, name), { force: true });
    }
  }
}
