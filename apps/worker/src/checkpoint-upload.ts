/**
 * Getting a lease's checkpoints accepted. The newest checkpoint waits (in memory and in the work
 * dir) until it can be uploaded: `checkpoint.begin` -> presigned PUT scoped to that one object ->
 * `checkpoint.commit` with its sha256 -> accepted (the new resume point; the previously accepted
 * file goes) or rejected (its file goes; the previous resume point stays). Each PUT retries store
 * faults itself (put-with-retries.ts); a URL that expired or was closed gets a fresh one (another
 * begin at the same step, which closes the old upload); nothing is committed unless every PUT
 * stored its bytes. A failure that outlasts those retries (a dropped connection, a store down)
 * waits out a jittered backoff; an expired or unknown lease ends the lease.
 */

import { type CheckpointUrl, OPTIMIZER_STATE_PROTOCOL } from '@archipelago/protocol';
import { abortableSleep } from './abortable-sleep.js';
import { Backoff } from './backoff.js';
import type { CheckpointBytes } from './checkpoint-files.js';
import { type Connection, DisconnectedError, RequestError } from './connection.js';
import { type PutRetryOptions, putWithRetries } from './put-with-retries.js';
import type { Reporter } from './reporter.js';
import type { LocalCheckpoint } from './work-dir.js';

/**
 * How one attempt ended: `superseded` means the coordinator already holds a checkpoint at or past
 * this step (reason `stale_checkpoint_step`: a commit whose answer was lost, say) and counts as accepted.
 */
export type UploadResult = 'accepted' | 'superseded' | 'rejected' | 'retry' | 'lost';

export interface CheckpointUploadOptions {
  leaseId: string;
  targetSteps: number;
  /** `welcomed`: the protocol the coordinator speaks (2: optimiser states travel too). */
  conn: Pick<Connection, 'ready' | 'request' | 'waitReady'> & {
    welcomed?: Connection['welcomed'];
  };
  log: Pick<Reporter, 'info' | 'warn'>;
  /** What the coordinator had accepted for this expert when the session began. */
  accepted: { step: number | null; sha256: string | null };
  /** Delete a checkpoint file that is no longer needed. */
  remove: (relative: string) => void;
  /** The checkpoints to record in the work dir changed. */
  persist: () => void;
  /** The coordinator says the lease is gone (expired or unknown). */
  lose: (reason: string) => void;
  /** Delays between failed attempts. Default 1 s doubling to 30 s. */
  backoff?: Backoff;
  fetch?: typeof fetch;
  /** How each PUT retries store faults (its attempts and their backoff); see putWithRetries. */
  putRetry?: Omit<PutRetryOptions, 'fetch' | 'onRetry'>;
}

/** Fresh URLs one attempt asks for when a PUT's URL expired or was closed. */
const FRESH_URLS = 2;

/** The coordinator's latest accepted checkpoint of the expert. */
interface Accepted {
  step: number | null;
  /** Its sha256, when known. */
  sha256: string | null;
  /** Its file in the work dir, when this worker wrote it. */
  local: LocalCheckpoint | null;
}

const MB = 1024 * 1024;

export class CheckpointUpload {
  private waiting: CheckpointBytes | null = null;
  private accepted: Accepted;
  private finalId: string | null = null;
  private nextAttemptAt = 0;
  private readonly backoff: Backoff;

  constructor(private readonly options: CheckpointUploadOptions) {
    this.accepted = { ...options.accepted, local: null };
    this.backoff = options.backoff ?? new Backoff(1000, 30_000);
  }

  /** The checkpoint waiting to be uploaded. */
  get pending(): CheckpointBytes | null {
    return this.waiting;
  }

  get acceptedStep(): number | null {
    return this.accepted.step;
  }

  get acceptedSha256(): string | null {
    return this.accepted.sha256;
  }

  /** Set once the final checkpoint is accepted: the lease is complete with it. */
  get finalCheckpointId(): string | null {
    return this.finalId;
  }

  /** The checkpoint the work dir records: the one waiting, else the last accepted one. */
  get localCheckpoint(): LocalCheckpoint | null {
    return this.waiting?.ck ?? this.accepted.local;
  }

  /** The newest step a checkpoint covers, accepted or waiting. */
  get coveredStep(): number {
    return Math.max(this.accepted.step ?? 0, this.waiting?.ck.step ?? 0);
  }

  /** A checkpoint is waiting, the connection is up and no backoff is running. */
  get due(): boolean {
    return this.waiting !== null && this.options.conn.ready && Date.now() >= this.nextAttemptAt;
  }

  /** A checkpoint found at the start: accepted, it is the resume point's file; else it waits. */
  restore(checkpoint: CheckpointBytes): void {
    if (checkpoint.ck.accepted) this.accepted = { ...this.accepted, local: checkpoint.ck };
    else this.waiting = checkpoint;
  }

  /** A new checkpoint: it replaces any older one still waiting, which is then never uploaded. */
  offer(checkpoint: CheckpointBytes): void {
    const old = this.waiting;
    if (old && !old.ck.accepted) {
      this.options.log.info(
        `checkpoint of step ${old.ck.step} was not uploaded (offline); step ${checkpoint.ck.step} replaces it`,
      );
      this.options.remove(old.ck.file);
    }
    this.waiting = checkpoint;
    this.nextAttemptAt = 0;
    this.options.persist();
  }

  /**
   * One move towards getting the waiting checkpoint accepted: wait for the connection (calling
   * `onOffline` first), wait out the backoff (at most `maxWaitMs`), or try the upload once. Waits
   * end early when `signal` aborts.
   */
  async advance(
    signal: AbortSignal,
    opts: { onOffline?: () => void; maxWaitMs?: number } = {},
  ): Promise<void> {
    const { conn } = this.options;
    if (!conn.ready) {
      opts.onOffline?.();
      await conn.waitReady(signal).catch(() => {});
      return;
    }
    const wait = this.nextAttemptAt - Date.now();
    if (wait > 0) {
      await abortableSleep(Math.min(opts.maxWaitMs ?? Number.POSITIVE_INFINITY, wait), signal);
      return;
    }
    await this.flush();
  }

  /** Upload the waiting checkpoint once, and act on the answer; null when none waits. */
  async flush(): Promise<UploadResult | null> {
    const p = this.waiting;
    if (!p) return null;
    const result = await this.attempt(p);
    const { log, remove, persist } = this.options;
    switch (result) {
      case 'accepted':
      case 'superseded': {
        if (result === 'superseded')
          log.info(`checkpoint of step ${p.ck.step} had already been accepted`);
        p.ck.accepted = true;
        if (this.accepted.local) remove(this.accepted.local.file);
        this.accepted = {
          step: Math.max(this.accepted.step ?? 0, p.ck.step),
          sha256: p.ck.sha256,
          local: p.ck,
        };
        this.waiting = null;
        this.backoff.reset();
        persist();
        break;
      }
      case 'rejected':
        remove(p.ck.file);
        this.waiting = null;
        persist();
        break;
      case 'retry':
        this.nextAttemptAt = Date.now() + this.backoff.next();
        break;
      case 'lost':
        break;
    }
    return result;
  }

  /**
   * The PUTs of one begin's answer: the checkpoint's, then its optimiser state's when the URL has
   * one. `stored`: every object is in the store; `fresh`: a URL expired or was closed and
   * `mayRenew`, so begin again; `retry`: give up this attempt (logged).
   */
  private async putAll(
    url: CheckpointUrl,
    step: number,
    bytes: Uint8Array,
    state: Uint8Array | undefined,
    mayRenew: boolean,
  ): Promise<'stored' | 'fresh' | 'retry'> {
    const { log } = this.options;
    const puts: [string, string, Record<string, string>, Uint8Array][] = [
      [`checkpoint step ${step}`, url.putUrl, url.headers, bytes],
    ];
    if (state && url.optimizer)
      puts.push([
        `the optimizer state of step ${step}`,
        url.optimizer.putUrl,
        url.optimizer.headers,
        state,
      ]);
    for (const [what, putUrl, headers, body] of puts) {
      const put = await putWithRetries(putUrl, headers, body, {
        ...this.options.putRetry,
        ...(this.options.fetch ? { fetch: this.options.fetch } : {}),
        onRetry: ({ attempt, delayMs, reason }) =>
          log.info(`upload of ${what}: ${reason}; attempt ${attempt + 1} in ${delayMs} ms`),
      });
      if (put.outcome === 'stored' || put.outcome === 'exists') continue;
      if (put.outcome === 'closed' && mayRenew) {
        log.warn(`upload of ${what}: the URL was refused (${put.message}); asking for a fresh one`);
        return 'fresh';
      }
      log.warn(`upload of ${what} failed: ${put.message}; will retry`);
      return 'retry';
    }
    return 'stored';
  }

  /** begin -> PUT (and the optimiser state's PUT, with protocol 2) -> commit. */
  private async attempt(p: CheckpointBytes): Promise<UploadResult> {
    const { conn, log, leaseId } = this.options;
    const { ck } = p;
    const protocol = conn.welcomed?.protocol ?? 1;
    const state =
      p.optimizer && ck.optimizer && protocol >= OPTIMIZER_STATE_PROTOCOL
        ? { bytes: p.optimizer, ref: ck.optimizer }
        : null;
    const begin = () =>
      conn.request(
        {
          type: 'checkpoint.begin',
          leaseId,
          step: ck.step,
          bytes: ck.bytes,
          sha256: ck.sha256,
          final: ck.final,
          ...(state ? { optimizer: { bytes: state.ref.bytes, sha256: state.ref.sha256 } } : {}),
        },
        ['checkpoint.url'],
      );
    try {
      let url = await begin();
      for (let renewals = 0; ; renewals++) {
        const put = await this.putAll(url, ck.step, p.bytes, state?.bytes, renewals < FRESH_URLS);
        if (put === 'retry') return 'retry';
        if (put === 'stored') break;
        url = await begin();
      }
      const reply = await conn.request(
        { type: 'checkpoint.commit', leaseId, checkpointId: url.checkpointId },
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
        `checkpoint of step ${ck.step}/${this.options.targetSteps}${ck.final ? ' (final)' : ''} accepted: ${(ck.bytes / MB).toFixed(1)} MB, sha256 ${ck.sha256.slice(0, 12)}`,
      );
      if (ck.final) this.finalId = reply.checkpointId;
      return 'accepted';
    } catch (err) {
      if (err instanceof RequestError) {
        if (err.code === 'lease_expired' || err.code === 'unknown_lease') {
          this.options.lose(err.message);
          return 'lost';
        }
        if (err.reason === 'stale_checkpoint_step') return 'superseded';
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
}
