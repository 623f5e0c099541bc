import { type Static, Type } from 'typebox';

/** Stable codes of error frames; the worker acts on them (stop, back off, re-hello). */
export const WORKER_ERROR_CODES = [
  'bad_json',
  'unknown_type',
  'invalid_message',
  'frame_too_large',
  'out_of_order',
  'unsupported_protocol',
  'unauthorized',
  'token_revoked',
  'unknown_lease',
  'lease_expired',
  /** lease.request while this worker already holds an active lease (one at a time). */
  'lease_held',
  /** lease.request while the worker's token holds as many active leases as a token may. */
  'lease_limit',
  /** hello while the token has as many open connections as a token may (sent with a close). */
  'connection_limit',
  'rate_limited',
  'internal_error',
] as const;
export type WorkerErrorCode = (typeof WORKER_ERROR_CODES)[number];

/**
 * Finer stable reasons some error frames carry beside their code, for workers to act on (never
 * on the message text). A frame's `code` stays what older workers know.
 * - `stale_checkpoint_step` (with `invalid_message`): the step is not after the last accepted
 *   checkpoint; a checkpoint of that step was accepted already (a commit whose answer was lost).
 *   Also the answer to a commit at a step another upload was accepted at meanwhile.
 * - `checkpoint_step` (with `invalid_message`): a `checkpoint.begin` at a step that is neither a
 *   multiple of the checkpoint interval nor the target (`isCheckpointStep`).
 * - `checkpoint_size` (with `invalid_message`): a `checkpoint.begin` whose `bytes` no checkpoint
 *   of the run's architecture can have (its exact tensor bytes plus a small header allowance).
 */
export const WORKER_ERROR_REASONS = [
  'stale_checkpoint_step',
  'checkpoint_step',
  'checkpoint_size',
] as const;
export type WorkerErrorReason = (typeof WORKER_ERROR_REASONS)[number];

/** Either direction: what was wrong with the last frame. `fatal` frames are followed by a close. */
export const ErrorFrame = Type.Object(
  {
    type: Type.Literal('error'),
    code: Type.Enum(WORKER_ERROR_CODES),
    message: Type.String({ maxLength: 2000 }),
    fatal: Type.Boolean(),
    /** A finer stable reason, for the codes that have them (see WORKER_ERROR_REASONS). */
    reason: Type.Optional(Type.Enum(WORKER_ERROR_REASONS)),
    /** The `type` of the frame this answers, when it could be read. */
    inReplyTo: Type.Optional(Type.String({ maxLength: 40 })),
  },
  { additionalProperties: false, title: 'ErrorFrame' },
);
export type ErrorFrame = Static<typeof ErrorFrame>;
