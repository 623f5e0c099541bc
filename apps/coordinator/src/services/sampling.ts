/**
 * Sampling from published ensembles. In-process (the embedded default) requests run one at a
 * time in this process, on a compute thread (compute/compute-pool.ts; on the event loop with
 * `computeThreads` 0), with at most `maxQueued` waiting; with Redis they are BullMQ jobs on the
 * sampling queue, taken by whichever sampler process is free (the coordinator itself unless
 * `localJobs` is off, and any `coordinator sampler` process on any machine that reaches the same
 * Redis and object store). Every sampler keeps the last ensembles it used loaded.
 *
 * Sampling requests are not rows in SQLite: a request lives as long as its HTTP call, so after a
 * crash there is nothing to resume, and a request whose client goes away is dropped: removed
 * while it waits, stopped at its next step while it runs. One client may have at most
 * `maxPerClient` requests waiting or running.
 */
import { encodePng, type ImageSet, renderGrid, upscaleFor } from '@archipelago/data';
import { SAMPLE_LIMITS, type SampleRequest } from '@archipelago/protocol';
import type { ObjectStore } from '@archipelago/storage';
import { Queue, QueueEvents, QueueEventsProducer, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ComputePool } from '../compute/compute-pool.js';
import {
  LoadedEnsemble,
  type SampleOutput,
  type SampleSettings,
  sampleCost,
} from '../ensembles/loaded-ensemble.js';
import { verifyManifest } from '../ensembles/manifest.js';
import { DomainError } from '../errors.js';
import { type RedisOptions, redisConnection, SAMPLING_QUEUE } from '../redis.js';
import { readManifest } from './ensembles.js';

export interface SamplingOptions {
  store: ObjectStore;
  log: Logger;
  redis?: RedisOptions;
  /** Take sampling jobs in this process (Redis mode; in-process mode always does). */
  local: boolean;
  maxQueued: number;
  /** Requests one client may have waiting or running (default 2). */
  maxPerClient?: number;
  /** Ensembles kept loaded (default 2). */
  cacheSize?: number;
  /**
   * Compute threads to sample on (compute/compute-pool.ts), so sampling never holds this event
   * loop; without it, sampling runs here (still yielding between steps).
   */
  compute?: ComputePool;
}

/** Settings of a request, with the ensemble's defaults for what it leaves out. */
export function resolveSettings(
  req: SampleRequest,
  ensemble: {
    experts: number;
    numClasses: number;
    inference: LoadedEnsemble['manifest']['inference'];
  },
): SampleSettings {
  const inf = ensemble.inference;
  const routing = req.routing ?? inf.routing;
  const s: SampleSettings = {
    count: req.count,
    steps: req.steps ?? inf.steps,
    seed: req.seed,
    sampler: req.sampler ?? inf.sampler,
    routing,
    k: req.k ?? (routing === 'top-k' ? inf.topK : 1),
    tau: req.tau ?? inf.threshold,
    conversion: req.conversion ?? inf.conversion,
    class: req.class ?? null,
    classes:
      req.classes ??
      (req.class !== undefined ? new Array<number>(req.count).fill(req.class) : null),
    guidance: req.guidance ?? inf.guidance,
  };
  if (req.class !== undefined && req.classes !== undefined)
    throw new DomainError('bad_request', 'give class or classes, not both');
  if (s.classes !== null && s.classes.length !== s.count)
    throw new DomainError(
      'bad_request',
      `classes has ${s.classes.length} labels for count ${s.count}`,
    );
  if (s.routing === 'top-k' && s.k > ensemble.experts)
    throw new DomainError(
      'bad_request',
      `top-k with k = ${s.k}: the ensemble has ${ensemble.experts} experts`,
    );
  if (s.classes !== null && ensemble.numClasses === 0)
    throw new DomainError('bad_request', 'this ensemble is unconditional: omit class');
  const bad = s.classes?.find((c) => c >= ensemble.numClasses);
  if (bad !== undefined)
    throw new DomainError(
      'bad_request',
      `class ${bad} is out of range 0..${ensemble.numClasses - 1}`,
    );
  if (s.sampler === 'ddim' && s.steps > 1000)
    throw new DomainError('bad_request', 'DDIM takes at most 1000 steps');
  const cost = sampleCost(s, ensemble.experts);
  if (cost > SAMPLE_LIMITS.maxCost) {
    throw new DomainError(
      'too_costly',
      `this request needs ${cost} expert evaluations (count x steps x experts per step${s.sampler === 'heun' ? ' x 2 for Heun' : ''}${s.classes !== null && s.guidance !== 1 ? ' x 2 for guidance' : ''}); the limit is ${SAMPLE_LIMITS.maxCost}: lower count, steps or k`,
    );
  }
  return s;
}

interface WireOutput extends Omit<SampleOutput, 'pixels'> {
  pixels: string;
}

/** Who asks, and the signal that aborts once they went away. */
export interface SampleCaller {
  /** The client (request.ip) its per-client limit counts against. */
  client?: string;
  signal?: AbortSignal;
}

/** The event a requester publishes on the sampling queue to stop a job a sampler is running. */
const CANCEL_EVENT = 'sample.cancel';

const cancelled = () =>
  new DomainError('cancelled', 'the client went away; its sampling request was dropped');

/** One in-process request, waiting for or holding the one slot. */
interface Entry {
  ensembleId: string;
  settings: SampleSettings;
  signal: AbortSignal | undefined;
  resolve: (out: SampleOutput) => void;
  reject: (err: unknown) => void;
  done: () => void;
}

export class SamplingService {
  private readonly cache = new Map<string, Promise<LoadedEnsemble>>();
  /** Manifests are immutable: cache them for good. */
  private readonly manifests = new Map<string, LoadedEnsemble['manifest']>();
  /** In-process: requests waiting, and the one being sampled. */
  private readonly waiting: Entry[] = [];
  private running: Promise<void> | null = null;
  private readonly perClient = new Map<string, number>();
  private stoppedCount = 0;
  private queue: Queue | null = null;
  private events: QueueEvents | null = null;
  private cancels: QueueEventsProducer | null = null;
  private worker: Worker | null = null;
  private readonly connections: Redis[] = [];

  constructor(private readonly options: SamplingOptions) {}

  get mode(): 'bullmq' | 'in-process' {
    return this.options.redis ? 'bullmq' : 'in-process';
  }

  /**
   * In-process requests waiting and running, and how many were dropped because their client went
   * away (while waiting or mid-sampling).
   */
  activity(): { waiting: number; running: number; dropped: number } {
    return {
      waiting: this.waiting.length,
      running: this.running ? 1 : 0,
      dropped: this.stoppedCount,
    };
  }

  /**
   * Requests waiting and running: this process's in-process ones, or with Redis those on the
   * shared sampling queue (every sampler's).
   */
  async depth(): Promise<{ waiting: number; running: number }> {
    if (!this.queue) return { waiting: this.waiting.length, running: this.running ? 1 : 0 };
    const counts = await this.queue.getJobCounts('waiting', 'active');
    return { waiting: counts.waiting ?? 0, running: counts.active ?? 0 };
  }

  /** The stored manifest of an ensemble (read once: manifests are immutable). */
  private async manifest(id: string): Promise<LoadedEnsemble['manifest']> {
    let m = this.manifests.get(id);
    if (!m) {
      m = (await readManifest(this.options.store, id)).manifest;
      this.manifests.set(id, m);
    }
    return m;
  }

  /** What request validation needs of an ensemble, from its manifest alone. */
  async describe(id: string): Promise<{
    experts: number;
    numClasses: number;
    inference: LoadedEnsemble['manifest']['inference'];
  }> {
    const m = await this.manifest(id);
    const arch = m.model.architecture as { numClasses?: number };
    return {
      experts: m.experts.length,
      numClasses: Number(arch.numClasses ?? 0),
      inference: m.inference,
    };
  }

  /** A loaded ensemble (manifest signature and every file's hash checked), cached. */
  ensemble(id: string): Promise<LoadedEnsemble> {
    const hit = this.cache.get(id);
    if (hit) {
      this.cache.delete(id);
      this.cache.set(id, hit);
      return hit;
    }
    const loading = (async () => {
      const { store } = this.options;
      const manifest = await this.manifest(id);
      verifyManifest(manifest);
      return LoadedEnsemble.load(manifest, (file) => store.getBytes(file.key));
    })();
    loading.catch(() => this.cache.delete(id));
    this.cache.set(id, loading);
    while (this.cache.size > (this.options.cacheSize ?? 2)) {
      const [oldest, entry] = this.cache.entries().next().value as [
        string,
        Promise<LoadedEnsemble>,
      ];
      this.cache.delete(oldest);
      void entry.then((e) => e.dispose()).catch(() => {});
    }
    return loading;
  }

  async start(): Promise<void> {
    const { redis, local } = this.options;
    if (!redis) return;
    const prefix = redis.prefix ?? 'archipelago';
    this.queue = new Queue(SAMPLING_QUEUE, { connection: this.connection(), prefix });
    this.events = new QueueEvents(SAMPLING_QUEUE, { connection: this.connection(), prefix });
    this.cancels = new QueueEventsProducer(SAMPLING_QUEUE, {
      connection: this.connection(),
      prefix,
    });
    // A requester whose client went away asks whichever sampler runs its job to stop it.
    (this.events as unknown as NodeJS.EventEmitter).on(CANCEL_EVENT, (args: { jobId?: string }) => {
      if (args.jobId) this.worker?.cancelJob(args.jobId, 'the client went away');
    });
    await this.events.waitUntilReady();
    if (local) await this.startWorker();
  }

  /** Take sampling jobs from Redis in this process (a `coordinator sampler`). */
  async startWorker(): Promise<void> {
    const { redis } = this.options;
    if (!redis || this.worker) return;
    this.worker = new Worker(
      SAMPLING_QUEUE,
      async (job, _token, signal) => {
        const { ensembleId, settings } = job.data as {
          ensembleId: string;
          settings: SampleSettings;
        };
        const out = await this.run(ensembleId, settings, signal);
        return { ...out, pixels: Buffer.from(out.pixels).toString('base64') } satisfies WireOutput;
      },
      {
        connection: this.connection(),
        prefix: redis.prefix ?? 'archipelago',
        concurrency: 1,
        lockDuration: 120_000,
      },
    );
    this.worker.on('error', (err) => this.options.log.warn({ err }, 'sampler worker error'));
    await this.worker.waitUntilReady();
  }

  /**
   * Sample, here or on a sampler process. 429 `busy` when too many requests wait, `client_busy`
   * when this client has as many waiting or running as it may; `cancelled` once `signal` aborts.
   */
  async sample(
    ensembleId: string,
    settings: SampleSettings,
    { client = '', signal }: SampleCaller = {},
  ): Promise<SampleOutput> {
    if (signal?.aborted) throw cancelled();
    const mine = this.perClient.get(client) ?? 0;
    const maxPerClient = this.options.maxPerClient ?? 2;
    if (mine >= maxPerClient)
      throw new DomainError(
        'client_busy',
        `this client already has ${mine} sampling requests waiting or running, the most one client may have; wait for them`,
      );
    this.perClient.set(client, mine + 1);
    try {
      return this.queue && this.events
        ? await this.sampleOnQueue(this.queue, this.events, ensembleId, settings, signal)
        : await this.sampleHere(ensembleId, settings, signal);
    } finally {
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left > 0) this.perClient.set(client, left);
      else this.perClient.delete(client);
    }
  }

  private async sampleOnQueue(
    queue: Queue,
    events: QueueEvents,
    ensembleId: string,
    settings: SampleSettings,
    signal: AbortSignal | undefined,
  ): Promise<SampleOutput> {
    const waiting = await queue.getWaitingCount();
    if (waiting >= this.options.maxQueued)
      throw new DomainError(
        'busy',
        `${waiting} sampling requests are already waiting; try again shortly`,
      );
    const job = await queue.add(
      'sample',
      { ensembleId, settings },
      { removeOnComplete: true, removeOnFail: true, attempts: 1 },
    );
    const finished = job.waitUntilFinished(events, 300_000) as Promise<WireOutput>;
    let onAbort = () => {};
    const gone = new Promise<never>((_, reject) => {
      onAbort = () => {
        reject(cancelled());
        // A job still waiting is removed; one a sampler holds is locked, so it is asked to stop.
        job
          .remove()
          .catch(() =>
            this.cancels?.publishEvent({ eventName: CANCEL_EVENT, jobId: job.id! }).catch(() => {}),
          );
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const out = await Promise.race([finished, gone]);
      return { ...out, pixels: new Uint8Array(Buffer.from(out.pixels, 'base64')) };
    } finally {
      signal?.removeEventListener('abort', onAbort);
      finished.catch(() => {});
    }
  }

  private sampleHere(
    ensembleId: string,
    settings: SampleSettings,
    signal: AbortSignal | undefined,
  ): Promise<SampleOutput> {
    if (this.running && this.waiting.length >= this.options.maxQueued)
      throw new DomainError(
        'busy',
        `${this.waiting.length} sampling requests are already waiting; try again shortly`,
      );
    return new Promise<SampleOutput>((resolve, reject) => {
      const onAbort = () => {
        // Still waiting: it leaves the queue now. Running: the sampler stops at its next step.
        const i = this.waiting.indexOf(entry);
        if (i < 0) return;
        this.waiting.splice(i, 1);
        this.stoppedCount++;
        entry.done();
        reject(cancelled());
      };
      const entry: Entry = {
        ensembleId,
        settings,
        signal,
        resolve,
        reject,
        done: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
      this.next();
    });
  }

  /** Sample on a compute thread when there are any (the thread keeps the ensemble), else here. */
  private async run(
    ensembleId: string,
    settings: SampleSettings,
    signal: AbortSignal | undefined,
  ): Promise<SampleOutput> {
    const { compute } = this.options;
    if (compute)
      return compute.run(
        'sample',
        { ensembleId, settings },
        { affinity: ensembleId, ...(signal ? { signal } : {}) },
      );
    return (await this.ensemble(ensembleId)).sample(settings, signal);
  }

  /** Start the next waiting request when the slot is free. */
  private next(): void {
    if (this.running) return;
    const entry = this.waiting.shift();
    if (!entry) return;
    this.running = (async () => {
      try {
        entry.resolve(await this.run(entry.ensembleId, entry.settings, entry.signal));
      } catch (err) {
        if (entry.signal?.aborted) {
          this.stoppedCount++;
          entry.reject(cancelled());
        } else entry.reject(err);
      } finally {
        entry.done();
        this.running = null;
        this.next();
      }
    })();
  }

  /**
   * A Redis connection of this service's own: BullMQ leaves a connection it was given open, so
   * close() disconnects them (else they hold a process that is shutting down).
   */
  private connection(): Redis {
    const c = redisConnection(this.options.redis!);
    this.connections.push(c);
    return c;
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.events?.close();
    await this.cancels?.close();
    await this.queue?.close();
    for (const c of this.connections.splice(0)) c.disconnect();
    await this.running;
    for (const e of this.cache.values()) void e.then((x) => x.dispose()).catch(() => {});
    this.cache.clear();
  }
}

/** The samples as one PNG grid, `columns` wide (default near-square). */
export function gridPng(out: SampleOutput, columns?: number): Promise<Buffer> {
  const n = out.perSample.length;
  const cols = columns ?? Math.ceil(Math.sqrt(n));
  const set: ImageSet = {
    height: out.height,
    width: out.width,
    channels: out.channels,
    count: n,
    pixels: out.pixels,
    labels: new Int32Array(n).fill(-1),
    classNames: [],
  };
  const rows: number[][] = [];
  for (let i = 0; i < n; i += cols)
    rows.push(Array.from({ length: Math.min(cols, n - i) }, (_, j) => i + j));
  // Small images are upscaled to cells of up to 64 px (16x16 digits at 4x), so they can be read.
  return renderGrid(set, rows, { scale: upscaleFor(out.height, 64, 4) });
}

/** One PNG per sample, base64. */
export async function samplePngs(out: SampleOutput): Promise<string[]> {
  const size = out.height * out.width * out.channels;
  const pngs: string[] = [];
  for (let i = 0; i < out.perSample.length; i++) {
    const png = await encodePng(
      out.pixels.subarray(i * size, (i + 1) * size),
      out.height,
      out.width,
      out.channels,
    );
    pngs.push(png.toString('base64'));
  }
  return pngs;
}
