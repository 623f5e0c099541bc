/**
 * Domain errors: what services throw when a request cannot be done, each with a stable code from
 * one closed list. The error plugin turns a code into an HTTP status (plugins/errors.ts), the
 * worker hub into an error frame (workers/worker-hub.ts); the CLIs print the message.
 */
export const ERROR_CODES = [
  // The request is malformed or asks for something that cannot work.
  'bad_request',
  'validation_error',
  'folder_not_found',
  'embeddings_not_found',
  'unsupported_format',
  'too_small',
  'too_many_experts',
  'resolution_mismatch',
  'invalid_patch_size',
  'invalid_checkpoint_interval',
  'invalid_objective_mix',
  'clustering_mismatch',
  /** A run's `initFrom` names no usable donor; `details.reason` says why. */
  'invalid_init_from',
  // What it names does not exist (yet).
  'not_found',
  'not_published',
  'no_shard',
  /** The ensemble was published before scoring existed: it has no score. */
  'not_scored',
  /** The ensemble was published with scoring disabled (`scoreSamples` 0). */
  'score_disabled',
  // The state of what it names does not allow it.
  'conflict',
  'run_finished',
  'invalid_transition',
  /** The ensemble's score is still being computed (`details`: its job and progress). */
  'score_pending',
  /** Scoring the ensemble failed (`details.error`); the ensemble stays published. */
  'score_failed',
  // Limits.
  'too_costly',
  'busy',
  /** This client already has as many sampling requests waiting or running as it may. */
  'client_busy',
  /** Too many requests of one kind from this client in the current window (plugins/rate-limits.ts). */
  'rate_limited',
  /** As many event streams are open as the coordinator (or this client) may have. */
  'too_many_streams',
  /** The client went away before its request was served (its sampling job was stopped). */
  'cancelled',
  // A worker's lease messages (the worker protocol's codes).
  'unknown_lease',
  'lease_expired',
  'invalid_message',
  'out_of_order',
  'stale_checkpoint_step',
  /** A checkpoint.begin at a step off the checkpoint interval (and not the target). */
  'checkpoint_step',
  /** A checkpoint.begin of a size no checkpoint of the run's architecture has. */
  'checkpoint_size',
  'lease_held',
  /** The worker's token already holds as many active leases as a token may. */
  'lease_limit',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const notFound = (what: string, id: string) =>
  new DomainError('not_found', `${what} ${id} does not exist`);

/** An error that retrying cannot fix (bad input): a job that throws it fails at once. */
export class PermanentJobError extends Error {
  constructor(
    message: string,
    readonly code = 'job_failed',
  ) {
    super(message);
    this.name = 'PermanentJobError';
  }
}
