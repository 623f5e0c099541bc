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
  /** checkpoint.begin for a step at or before the expert's last accepted checkpoint. */
  'stale_checkpoint_step',
  'rate_limited',
  'internal_error',
] as const;
export type WorkerErrorCode = (typeof WORKER_ERROR_CODES)[number];

/** Either direction: what was wrong with the last frame. `fatal` frames are followed by a close. */
export const ErrorFrame = Type.Object(
  {
    type: Type.Literal('error'),
    code: Type.Enum(WORKER_ERROR_CODES),
    message: Type.String({ maxLength: 2000 }),
    fatal: Type.Boolean(),
    /** The `type` of the frame this answers, when it could be read. */
    inReplyTo: Type.Optional(Type.String({ maxLength: 40 })),
  },
  { additionalProperties: false, title: 'ErrorFrame' },
);
export type ErrorFrame = Static<typeof ErrorFrame>;
