/**
 * Worker threads holding identical replicas of a network, for data-parallel training on one
 * machine (the wasm backend runs one thread in Node; T workers use T cores, see
 * docs/machine-notes.md).
 *
 * Worker script: `replica-worker.js` next to this module, i.e. `dist/training/parallel/` of the
 * built package. When this module runs from TypeScript sources (vitest), the compiled worker is
 * taken from the package's `dist/` instead (worker threads cannot load `.ts`), so build the
 * package first (`npm run build -w @archipelago/models`; turbo's `test` task depends on `build`).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { BackendName } from '../../backend.js';
import type { TrainerState } from '../../nn/index.js';
import type { TaskSpec } from '../losses.js';
import type { NetworkSpec } from '../networks.js';
import { buffersOf, type HostBatch } from './host-batch.js';
import type {
  OptimizerOptions,
  ParamValues,
  ReplicaRequest,
  ReplicaResponse,
  ReplicaResults,
} from './messages.js';

/** A failure inside a replica worker (or of the worker itself), raised in the main thread. */
export class ReplicaError extends Error {
  override readonly name = 'ReplicaError';
  constructor(
    /** Index of the worker that failed. */
    readonly worker: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`replica worker ${worker}: ${message}`, options);
  }
}

/** The compiled worker script; see the module comment for the TypeScript-sources case. */
export function replicaWorkerUrl(): URL {
  const here = new URL('./replica-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const built = new URL(
    here.href.replace(
      /\/src\/training\/parallel\/replica-worker\.js$/,
      '/dist/training/parallel/replica-worker.js',
    ),
  );
  if (built.href !== here.href && existsSync(fileURLToPath(built))) return built;
  throw new Error(
    `replica worker script not found at ${fileURLToPath(here)}` +
      (built.href !== here.href ? ` nor ${fileURLToPath(built)}` : '') +
      ': build @archipelago/models first (npm run build -w @archipelago/models)',
  );
}

export interface ReplicaPoolOptions {
  threads: number;
  backend: BackendName;
  gpu?: number;
  network: NetworkSpec;
  task: TaskSpec;
  optimizer: OptimizerOptions;
  seed: number;
  params: ParamValues;
  optimizerState?: TrainerState;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/** One worker and its outstanding requests. */
class Replica {
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  private failure: ReplicaError | null = null;
  private terminating = false;

  constructor(
    readonly index: number,
    readonly worker: Worker,
  ) {
    worker.on('message', (msg: ReplicaResponse) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.type === 'result') p.resolve(msg.result);
      else {
        const err = new ReplicaError(index, msg.message);
        if (msg.stack)
          err.stack = `${err.name}: ${err.message}\n--- in the worker ---\n${msg.stack}`;
        p.reject(err);
      }
    });
    worker.on('error', (err) =>
      this.fail(new ReplicaError(index, `crashed: ${err.message}`, { cause: err })),
    );
    worker.on('exit', (code) => {
      if (!this.terminating)
        this.fail(new ReplicaError(index, `exited unexpectedly (code ${code})`));
    });
  }

  private fail(err: ReplicaError): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  request<K extends keyof ReplicaResults>(
    message: Omit<Extract<ReplicaRequest, { type: K }>, 'id'>,
    transfer: ArrayBuffer[] = [],
  ): Promise<ReplicaResults[K]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ ...message, id }, transfer);
    });
  }

  async terminate(): Promise<void> {
    this.terminating = true;
    this.fail(new ReplicaError(this.index, 'terminated'));
    await this.worker.terminate();
  }
}

/** A gradient from one replica: its shard's mean loss, row count and per-parameter gradients. */
export interface ShardGradient {
  loss: number;
  rows: number;
  grads: Float32Array[];
}

export class ReplicaPool {
  private broken: Error | null = null;

  private constructor(
    private readonly replicas: Replica[],
    /** Trainable parameter names, in the order of every gradient list. */
    readonly trainable: string[],
  ) {}

  /** Starts `threads` workers and initialises their replicas; rejects if any fails. */
  static async start(options: ReplicaPoolOptions): Promise<ReplicaPool> {
    const url = replicaWorkerUrl();
    const replicas = Array.from(
      { length: options.threads },
      (_, i) => new Replica(i, new Worker(url)),
    );
    try {
      const { threads: _threads, ...init } = options;
      const answers = await Promise.all(
        replicas.map((r) => r.request<'init'>({ type: 'init', ...init })),
      );
      const trainable = answers[0]!.trainable;
      return new ReplicaPool(replicas, trainable);
    } catch (err) {
      await Promise.all(replicas.map((r) => r.terminate()));
      throw err;
    }
  }

  get size(): number {
    return this.replicas.length;
  }

  /**
   * Gradients of each shard's mean loss, shard i on worker i (`shards.length` = pool size).
   * Empty shards are not sent; they come back as `{ rows: 0 }` with no gradient.
   */
  async gradients(shards: HostBatch[]): Promise<ShardGradient[]> {
    this.check();
    if (shards.length !== this.replicas.length) {
      throw new Error(`${shards.length} shards for ${this.replicas.length} replicas`);
    }
    return Promise.all(
      shards.map(async (batch, i) => {
        const rows = batch.x.shape[0] as number;
        if (rows === 0) return { loss: 0, rows: 0, grads: [] };
        const r = await this.replicas[i]!.request<'gradients'>(
          { type: 'gradients', batch },
          buffersOf(batch),
        );
        return { loss: r.loss, rows, grads: r.grads };
      }),
    );
  }

  /**
   * Sends one gradient to every replica to apply. Resolves when all have applied it; if any
   * fails, the replicas may differ and the pool refuses further work.
   */
  async apply(grads: Float32Array[], learningRate: number): Promise<void> {
    this.check();
    try {
      await Promise.all(
        this.replicas.map((r) => r.request<'apply'>({ type: 'apply', learningRate, grads })),
      );
    } catch (err) {
      this.broken = err instanceof Error ? err : new Error(String(err));
      throw err;
    }
  }

  /** Replica i's parameters. */
  params(i: number): Promise<Record<string, Float32Array>> {
    return this.replicas[i]!.request<'params'>({ type: 'params' }).then((r) => r.params);
  }

  async terminate(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.terminate()));
  }

  private check(): void {
    if (this.broken) {
      throw new Error(
        `replicas may differ after a failed update (${this.broken.message}); create a new trainer`,
      );
    }
  }
}
