/**
 * WAL checkpoints off the event loop. By default SQLite checkpoints inside the commit that takes
 * the write-ahead log past 1,000 pages: that commit then copies the log into the database and
 * syncs both files, holding the coordinator's loop for tens to hundreds of milliseconds (seen as
 * the slowest heartbeat flushes, docs/reliability.md). The coordinator's own connection turns
 * that off (`wal_autocheckpoint = 0`) and this thread, on a connection of its own to the same
 * file, runs a PASSIVE checkpoint every `everyMs`: it copies what no reader still needs without
 * taking any lock a writer waits on, so the loop never waits for it, and once it has copied the
 * whole log the next commit starts the log again from its beginning (the file stays bounded).
 *
 * If the thread fails (it cannot open the file, it dies) the coordinator's connection gets its
 * automatic checkpoints back, so the log never grows without bound.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type Sqlite from 'better-sqlite3';

/** What one checkpoint reported (SQLite's `wal_checkpoint` row). */
export interface CheckpointResult {
  /** 1 when a writer or reader kept it from running at all. */
  busy: number;
  /** Frames in the log. */
  log: number;
  /** Frames copied into the database. */
  checkpointed: number;
  /** When it began (ms since the epoch, the thread's clock = the process's). */
  at: number;
}

/** The automatic checkpoint threshold SQLite uses by default (pages). */
const SQLITE_DEFAULT_AUTOCHECKPOINT = 1000;

// The thread's code, evaluated as CommonJS: it gets the driver's resolved path, so it loads the
// same better-sqlite3 as the coordinator wherever the package is installed.
const THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
let db;
try {
  const Sqlite = require(workerData.driver);
  db = new Sqlite(workerData.file, { fileMustExist: true });
  db.pragma('busy_timeout = 0');
} catch (err) {
  parentPort.postMessage({ type: 'error', message: 'cannot open ' + workerData.file + ': ' + (err && err.message || err) });
  process.exit(1);
}
const once = () => {
  const at = Date.now();
  const [row] = db.pragma('wal_checkpoint(PASSIVE)');
  parentPort.postMessage({ type: 'checkpoint', busy: row.busy, log: row.log, checkpointed: row.checkpointed, at });
};
const timer = setInterval(() => {
  try { once(); } catch (err) { parentPort.postMessage({ type: 'error', message: String(err && err.message || err) }); }
}, workerData.everyMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  try { once(); } catch {}
  db.close();
  parentPort.close();
});
parentPort.postMessage({ type: 'ready' });
`;

export interface Checkpointer {
  /** Resolves once the thread has its connection open (rejects if it cannot). */
  readonly ready: Promise<void>;
  /** Checkpoints run, those that copied frames, the frames copied, and the last result. */
  readonly stats: {
    runs: number;
    checkpoints: number;
    copied: number;
    last: CheckpointResult | null;
  };
  /** A final checkpoint, then the thread's connection closed and the thread ended. */
  stop(): Promise<void>;
}

export interface CheckpointerOptions {
  /** How often to checkpoint (ms). */
  everyMs?: number;
  /** Told when the thread fails and automatic checkpoints come back. */
  onFailure?: (err: Error) => void;
}

/**
 * Move `client`'s WAL checkpoints to a thread of their own (see above). `file` is the database
 * file `client` has open (not `:memory:`).
 */
export function startCheckpointer(
  client: Sqlite.Database,
  file: string,
  options: CheckpointerOptions = {},
): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(THREAD, {
    eval: true,
    workerData: { driver, file, everyMs: options.everyMs ?? 1000 },
  });
  worker.unref();
  client.pragma('wal_autocheckpoint = 0');
  const stats: Checkpointer['stats'] = { runs: 0, checkpoints: 0, copied: 0, last: null };
  let stopping = false;
  let failed = false;
  const fail = (err: Error) => {
    if (failed || stopping) return;
    failed = true;
    // The log must not grow without bound: the connection checkpoints on its own again.
    if (client.open) client.pragma(`wal_autocheckpoint = ${SQLITE_DEFAULT_AUTOCHECKPOINT}`);
    options.onFailure?.(err);
    void worker.terminate();
  };
  let resolveReady: () => void;
  let rejectReady: (err: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => {});
  worker.on('message', (m: { type: string; message?: string } & CheckpointResult) => {
    if (m.type === 'ready') resolveReady();
    else if (m.type === 'checkpoint') {
      stats.runs++;
      stats.last = { busy: m.busy, log: m.log, checkpointed: m.checkpointed, at: m.at };
      if (m.checkpointed > 0) {
        stats.checkpoints++;
        stats.copied += m.checkpointed;
      }
    } else if (m.type === 'error') {
      const err = new Error(`WAL checkpoint failed: ${m.message}`);
      rejectReady(err);
      fail(err);
    }
  });
  worker.on('error', (err) => {
    rejectReady(err);
    fail(err);
  });
  const exited = new Promise<void>((resolve) =>
    worker.once('exit', (code) => {
      if (!stopping) {
        const err = new Error(`the WAL checkpoint thread exited with code ${code}`);
        rejectReady(err);
        fail(err);
      }
      resolve();
    }),
  );
  return {
    ready,
    stats,
    async stop() {
      if (stopping) return exited;
      stopping = true;
      // Waited for: an unref'd thread would let the process end with the wait unsettled.
      worker.ref();
      if (!failed) worker.postMessage('stop');
      await exited;
    },
  };
}
