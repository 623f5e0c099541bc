export { Backoff } from './backoff.js';
export { buildCli, type CliOptions, main } from './cli.js';
export {
  Connection,
  type ConnectionOptions,
  CoordinatorRefusedError,
  DisconnectedError,
  RequestError,
  socketUrl,
} from './connection.js';
export { EXIT, type ExitCode } from './exit-codes.js';
export { LeaseSession, type SessionContext, type SessionOutcome } from './lease-session.js';
export { DownloadError, ObjectCache, sha256Hex } from './object-cache.js';
export { formatDuration, formatProgress, type ProgressState, Reporter } from './reporter.js';
export type { Orphan } from './resume.js';
export { type Batch, LABEL_DROPOUT, ShardBatches } from './shard-batches.js';
export { VERSION } from './version.js';
export {
  type LocalCheckpoint,
  type SavedLease,
  WorkDir,
  WorkDirInUseError,
  type WorkerState,
} from './work-dir.js';
export { Worker, type WorkerOptions } from './worker.js';
