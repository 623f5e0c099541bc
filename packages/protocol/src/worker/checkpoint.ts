import { type Static, Type } from 'typebox';
import { Id } from '../common.js';

const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });

/** Worker -> coordinator: I have a checkpoint of this size and hash; where do I put it? */
export const CheckpointBegin = Type.Object(
  {
    type: Type.Literal('checkpoint.begin'),
    leaseId: Id,
    step: Type.Integer({ minimum: 0 }),
    bytes: Type.Integer({ minimum: 1 }),
    sha256: Sha256,
    /** The last checkpoint, at the target step. */
    final: Type.Boolean(),
  },
  { additionalProperties: false, title: 'CheckpointBegin' },
);
export type CheckpointBegin = Static<typeof CheckpointBegin>;

/** Coordinator -> worker: a presigned PUT URL scoped to this one object. */
export const CheckpointUrl = Type.Object(
  {
    type: Type.Literal('checkpoint.url'),
    leaseId: Id,
    checkpointId: Id,
    putUrl: Type.String({ minLength: 1, maxLength: 8192 }),
    headers: Type.Record(Type.String(), Type.String()),
    expiresAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false, title: 'CheckpointUrl' },
);
export type CheckpointUrl = Static<typeof CheckpointUrl>;

/** Worker -> coordinator: uploaded; verify it and make it the resume point. */
export const CheckpointCommit = Type.Object(
  { type: Type.Literal('checkpoint.commit'), leaseId: Id, checkpointId: Id },
  { additionalProperties: false, title: 'CheckpointCommit' },
);
export type CheckpointCommit = Static<typeof CheckpointCommit>;

export const CheckpointAccepted = Type.Object(
  {
    type: Type.Literal('checkpoint.accepted'),
    leaseId: Id,
    checkpointId: Id,
    step: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false, title: 'CheckpointAccepted' },
);
export type CheckpointAccepted = Static<typeof CheckpointAccepted>;

/** The previous resume point stays; `reason` says what was wrong (size, hash, missing object…). */
export const CheckpointRejected = Type.Object(
  {
    type: Type.Literal('checkpoint.rejected'),
    leaseId: Id,
    checkpointId: Id,
    reason: Type.String({ maxLength: 2000 }),
  },
  { additionalProperties: false, title: 'CheckpointRejected' },
);
export type CheckpointRejected = Static<typeof CheckpointRejected>;
