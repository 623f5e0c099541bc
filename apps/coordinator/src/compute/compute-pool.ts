/**
 * The coordinator's compute threads: sampling, checkpoint validation, router training and the
 * scoring of published ensembles run here,
 * on `node:worker_threads` Workers (compute-thread.ts), instead of on the event loop that serves
 * HTTP requests and worker sockets. `computeThreads` of them (default 1; 0 keeps everything on the
 * event loop, as before). A thread runs any number of tasks at once, interleaved at their awaits
 * exactly as they were on the main thread; what limits concurrency stays where it was (the
 * sampling slot, the job queue's concurrency).
 *
 * The main thread stays the only one that writes SQLite: a thread only reads the object store and
 * computes; what it returns (samples, a verdict, a router's bytes) is applied by the caller, which
 * stores and records it. Progress reports come
 * back as messages; a task whose caller's signal aborts is told to stop (sampling stops at its next
 * step). A thread that dies fails the tasks it held and is replaced by the next task.
 *
 * Worker script: `compute-thread.js` next to this module, i.e. `dist/compute/` of the coordinator;
 * under the TypeScript sources (tests) the built one is used, so build the coordinator first.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { BackendName } from '@archipelago/models';
import type { Logger } from 'pino';
import type { CoordinatorConfig } from '../config.js';
import {
  type ComputeKind,
  type ComputeTasks,
  type ComputeThreadData,
  type FromThread,
  fromWireError,
  type ToThread,
} from './messages.js';

/** The compiled thread script (the coordinator's dist/ when running from src/). */
export function computeThreadUrl(): URL {
  const here = new URL('./compute-thread.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const built = new URL(
    here.href.replace(/\/src\/compute\/compute-thread\.js$/, '/dist/compute/compute-thread.js'),
  );
  if (built.href !== here.href && existsSync(fileURLToPath(built))) return built;
  throw new Error(
    `compute thread script not found at ${fileURLToPath(here)}` +
      (built.href !== here.href ? ` nor ${fileURLToPath(built)}` : '') +
      ': build the coordinator first (npm run build -w @archipelago/coordinator)',
  );
}

export interface ComputePoolOptions {
  config: CoordinatorConfig;
  backend: BackendName;
  threads: number;
  log: Logger;
}

export interface RunOptions {
  /** Aborting it asks the thread to stop the task; the task's promise then rejects. */
  signal?: AbortSignal;
  onProgress?: (stage: string, done: number, total: number) => void;
  /** Tasks with the same key prefer the same thread (an ensemble stays loaded in one). */
  affinity?: string;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  onProgress: RunOptions['onProgress'];
}

class ComputeThread {
  readonly pending = new Map<number, Pending>();
  readonly affinities = new Set<string>();
  dead = false;
  /** Terminated by close(): not worth a warning. */
  stopping = false;

  constructor(
    readonly worker: Worker,
    onExit: (t: ComputeThread) => void,
    log: Logger,
  ) {
    worker.unref();
    worker.on('message', (msg: FromThread) => {
      if (msg.type === 'ready') return;
      const p = this.pending.get(msg.id);
      if (!p) return;
      if (msg.type === 'progress') {
        p.onProgress?.(msg.stage, msg.done, msg.total);
        return;
      }
      this.settle(msg.id);
      if (msg.type === 'done') p.resolve(msg.result);
      else p.reject(fromWireError(msg.error));
    });
    const die = (why: string) => {
      if (this.dead) return;
      this.dead = true;
      if (!this.stopping) log.warn({ why }, 'compute thread stopped; its tasks failed');
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new Error(`the compute thread stopped: ${why}`));
      }
      onExit(this);
    };
    worker.on('error', (err) => die(err.message));
    worker.on('exit', (code) => die(`exit code ${code}`));
  }

  /** Keep the process alive only while a task is out (an idle pool never holds up an exit). */
  add(id: number, p: Pending): void {
    if (this.pending.size === 0) this.worker.ref();
    this.pending.set(id, p);
  }

  settle(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
  }
}

export class ComputePool {
  private readonly threads: ComputeThread[] = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly options: ComputePoolOptions) {
    if (!(options.threads >= 1)) throw new RangeError('a compute pool needs at least one thread');
  }

  /**
   * Start the threads now, so their backend is loaded before the first task needs it (else the
   * first task starts them: a CLI command that never samples never pays for them).
   */
  warm(): void {
    while (!this.closed && this.threads.length < this.options.threads) this.spawn();
  }

  get size(): number {
    return this.options.threads;
  }

  /** Tasks out on threads now. */
  get busy(): number {
    return this.threads.reduce((a, t) => a + t.pending.size, 0);
  }

  private spawn(): ComputeThread {
    const { config, backend, log } = this.options;
    const workerData: ComputeThreadData = { config, backend };
    const thread = new ComputeThread(
      new Worker(computeThreadUrl(), { workerData }),
      (t) => {
        const i = this.threads.indexOf(t);
        if (i >= 0) this.threads.splice(i, 1);
      },
      log,
    );
    this.threads.push(thread);
    return thread;
  }

  /** The least busy thread, the one that had `affinity` among equals; a new one for a dead one. */
  private pick(affinity: string | undefined): ComputeThread {
    this.warm();
    let best = this.threads[0]!;
    for (const t of this.threads) {
      const load = t.pending.size - (affinity && t.affinities.has(affinity) ? 0.5 : 0);
      const bestLoad = best.pending.size - (affinity && best.affinities.has(affinity) ? 0.5 : 0);
      if (load < bestLoad) best = t;
    }
    return best;
  }

  run<K extends ComputeKind>(
    kind: K,
    input: ComputeTasks[K]['input'],
    options: RunOptions = {},
  ): Promise<ComputeTasks[K]['result']> {
    if (this.closed) return Promise.reject(new Error('the compute pool is closed'));
    const { signal, onProgress, affinity } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const thread = this.pick(affinity);
    if (affinity) {
      for (const t of this.threads) t.affinities.delete(affinity);
      thread.affinities.add(affinity);
    }
    const id = this.nextId++;
    return new Promise<ComputeTasks[K]['result']>((resolve, reject) => {
      const onAbort = () => {
        if (thread.pending.has(id)) thread.worker.postMessage({ type: 'cancel', id } as ToThread);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => signal?.removeEventListener('abort', onAbort);
      thread.add(id, {
        resolve: (v) => {
          done();
          resolve(v as ComputeTasks[K]['result']);
        },
        reject: (e) => {
          done();
          reject(e);
        },
        onProgress,
      });
      thread.worker.postMessage({ type: 'task', id, kind, input } as ToThread);
    });
  }

  /** Stop every thread; tasks still out fail. */
  async close(): Promise<void> {
    this.closed = true;
    const all = this.threads.splice(0);
    for (const t of all) t.stopping = true;
    await Promise.all(all.map((t) => t.worker.terminate()));
  }
}
