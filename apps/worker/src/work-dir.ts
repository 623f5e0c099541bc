/**
 * The worker's local directory: its identity per coordinator and the lease it holds
 * (`state.json`, written atomically), verified downloads (`cache/<sha256>.bin`), its latest
 * checkpoint (`checkpoints/`), and a lock (`worker.lock`) so two processes never share one.
 *
 * Default: `~/.archipelago/worker-gpu<N>` with `--gpu N`, else `~/.archipelago/worker-cpu`, so a
 * process per GPU on one machine gets its own identity and state without any flag.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import type { LeaseGrant } from '@archipelago/protocol';

/** A checkpoint this worker wrote, kept until a newer one is accepted. */
export interface LocalCheckpoint {
  /** Path relative to the work dir. */
  file: string;
  step: number;
  sha256: string;
  bytes: number;
  final: boolean;
  /** True once the coordinator accepted it. */
  accepted: boolean;
  /** Its optimiser state (a non-final checkpoint's), in a file beside it. */
  optimizer?: { file: string; sha256: string; bytes: number };
}

/** The lease held when the state was last written: enough to re-attach after a restart. */
export interface SavedLease {
  coordinator: string;
  leaseId: string;
  expertId: string;
  /** The grant as received (its shard is in the cache, so expired URLs do not matter). */
  grant: LeaseGrant;
  /** Steps trained when the state was written. */
  step: number;
  /** Step of the last checkpoint the coordinator accepted for this expert, or null. */
  acceptedStep: number | null;
  checkpoint: LocalCheckpoint | null;
}

export interface WorkerState {
  version: 1;
  /** Identity per coordinator URL, from its welcome. */
  identities: Record<string, { workerId: string }>;
  lease: SavedLease | null;
}

export class WorkDirInUseError extends Error {
  constructor(
    readonly root: string,
    readonly pid: number,
  ) {
    super(
      `work dir ${root} is in use by process ${pid}; give each worker its own --work-dir (or its own --gpu), or delete ${path.join(root, 'worker.lock')} if that process is gone`,
    );
    this.name = 'WorkDirInUseError';
  }
}

const emptyState = (): WorkerState => ({ version: 1, identities: {}, lease: null });

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class WorkDir {
  readonly root: string;
  private locked = false;

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  /** `~/.archipelago/worker-gpu<N>` or `~/.archipelago/worker-cpu`. */
  static defaultPath(gpu: number | undefined, home = homedir()): string {
    return path.join(home, '.archipelago', gpu === undefined ? 'worker-cpu' : `worker-gpu${gpu}`);
  }

  get statePath(): string {
    return path.join(this.root, 'state.json');
  }

  get cacheDir(): string {
    return path.join(this.root, 'cache');
  }

  get checkpointDir(): string {
    return path.join(this.root, 'checkpoints');
  }

  private get lockPath(): string {
    return path.join(this.root, 'worker.lock');
  }

  /**
   * Create the directories and take the lock.
   * @throws {WorkDirInUseError} when a live process holds the lock
   */
  open(): void {
    for (const dir of [this.root, this.cacheDir, this.checkpointDir])
      mkdirSync(dir, { recursive: true });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(this.lockPath, 'wx');
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        this.locked = true;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const pid = Number.parseInt(readFileSync(this.lockPath, 'utf8'), 10);
        if (Number.isInteger(pid) && pid !== process.pid && alive(pid))
          throw new WorkDirInUseError(this.root, pid);
        // A stale lock (the process was killed): take it over.
        rmSync(this.lockPath, { force: true });
      }
    }
    throw new Error(`cannot take the lock ${this.lockPath}`);
  }

  /** Release the lock (idempotent). */
  close(): void {
    if (!this.locked) return;
    this.locked = false;
    try {
      unlinkSync(this.lockPath);
    } catch {
      // already gone
    }
  }

  readState(): WorkerState {
    if (!existsSync(this.statePath)) return emptyState();
    try {
      const parsed = JSON.parse(readFileSync(this.statePath, 'utf8')) as Partial<WorkerState>;
      if (parsed.version !== 1) return emptyState();
      return { version: 1, identities: parsed.identities ?? {}, lease: parsed.lease ?? null };
    } catch {
      // A torn or hand-edited file: start over rather than refuse to run.
      return emptyState();
    }
  }

  /** Write the state atomically: a reader sees the old or the new file, never half of one. */
  writeState(state: WorkerState): void {
    this.writeAtomic(this.statePath, `${JSON.stringify(state, null, 2)}\n`);
  }

  /** Write `data` to `file` through a temporary file and a rename. */
  writeAtomic(file: string, data: string | Uint8Array): void {
    const tmp = `${file}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  }

  resolve(relative: string): string {
    return path.join(this.root, relative);
  }
}
