export { Backoff } from './backoff.js';
export { buildCli, buildControlCli, type CliOptions, describeStatus, main } from './cli.js';
export {
  Connection,
  type ConnectionOptions,
  CoordinatorRefusedError,
  DisconnectedError,
  RequestError,
  socketUrl,
} from './connection.js';
export {
  CONTROL_COMMANDS,
  type ControlCommand,
  type ControlReply,
  ControlServer,
  controlSocketPath,
  NoWorkerError,
  parseControlRequest,
  sendControl,
} from './control-socket.js';
export { type ControlLimits, Controls } from './controls.js';
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
export { Worker, type WorkerOptions, type WorkerStatus } from './worker.js';
