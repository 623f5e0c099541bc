/**
 * What a volunteer asks of a running worker, whichever way it arrives (SIGUSR1/SIGUSR2, the local
 * `worker pause|resume|finish` command): pause training between steps and resume it, finish the
 * current checkpoint and exit, and the limits it trains under (a memory ceiling). The worker and
 * its lease session read it; nothing here talks to the coordinator.
 */

export interface ControlLimits {
  /** Stop (checkpoint what is there, release, exit 4) once the RSS is above this many MiB. */
  maxMemoryMb?: number;
}

export class Controls {
  private pausedSince: number | null = null;
  private finishAt: number | null = null;
  private readonly wakers = new Set<() => void>();
  private readonly changed = new Set<() => void>();

  constructor(readonly limits: ControlLimits = {}) {}

  get paused(): boolean {
    return this.pausedSince !== null;
  }

  /** When training was paused (ms), or null. */
  get since(): number | null {
    return this.pausedSince;
  }

  /** Finish was asked for: train to the next checkpoint, upload it, release, exit 0. */
  get finishing(): boolean {
    return this.finishAt !== null;
  }

  /** Pause training after the current step; false when it was paused already. */
  pause(): boolean {
    if (this.pausedSince !== null) return false;
    this.pausedSince = Date.now();
    this.notify();
    return true;
  }

  /** Resume training; false when it was not paused. */
  resume(): boolean {
    if (this.pausedSince === null) return false;
    this.pausedSince = null;
    this.notify();
    return true;
  }

  /** Finish the current checkpoint and exit (resumes a paused worker: finishing needs steps). */
  finish(): boolean {
    if (this.finishAt !== null) return false;
    this.finishAt = Date.now();
    this.pausedSince = null;
    this.notify();
    return true;
  }

  /** Call `fn` whenever the pause or finish state changes (e.g. to heartbeat at once). */
  onChange(fn: () => void): () => void {
    this.changed.add(fn);
    return () => this.changed.delete(fn);
  }

  /** Resolves on the next change, after `ms`, or when `signal` aborts, whichever comes first. */
  waitForChange(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.wakers.add(done);
    });
  }

  /** The resident set size in MiB when it is above `--max-memory-mb`, else null. */
  overMemory(rss = process.memoryUsage.rss()): number | null {
    const max = this.limits.maxMemoryMb;
    const mb = rss / 1024 ** 2;
    return max !== undefined && mb > max ? Math.round(mb) : null;
  }

  private notify(): void {
    for (const wake of [...this.wakers]) wake();
    for (const fn of this.changed) fn();
  }
}
