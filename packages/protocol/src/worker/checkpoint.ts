import { type Static, Type } from 'typebox';
import { Id } from '../common.js';

const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });

/**
 * The steps a checkpoint may be at: the multiples of the checkpoint interval before the target,
 * and the target (the final one). A worker never uploads another; the coordinator refuses one.
 */
export const isCheckpointStep = (step: number, interval: number, target: number): boolean =>
  step === target || (step > 0 && step < target && step % interval === 0);

/**
 * Stable codes a `checkpoint.rejected` reason starts with (`<code>: <message>`): nothing was
 * uploaded, the stored object's size or sha256 is not the announced one, or its header is not a
 * checkpoint of the run's architecture (the checkpoint error's own code follows).
 */
export const CHECKPOINT_REJECT_CODES = [
  'missing_object',
  'size_mismatch',
  'sha256_mismatch',
  'bad_header',
] as const;
export type CheckpointRejectCode = (typeof CHECKPOINT_REJECT_CODES)[number];

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
    /**
     * Protocol 2: the checkpoint's optimiser state (Adam's moments and step, the live weights:
     * what an exact resume needs), uploaded beside it as an object of its own.
     */
    optimizer: Type.Optional(
      Type.Object(
        { bytes: Type.Integer({ minimum: 1 }), sha256: Sha256 },
        { additionalProperties: false },
      ),
    ),
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
    /** When the begin announced an optimiser state: where to PUT it (same expiry). */
    optimizer: Type.Optional(
      Type.Object(
        {
          putUrl: Type.String({ minLength: 1, maxLength: 8192 }),
          headers: Type.Record(Type.String(), Type.String()),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false, title: 'CheckpointUrl' },
);
export type CheckpointUrl = Static<typeof CheckpointUrl>;

/**
 * Worker -> coordinator: uploaded (with its optimiser state, when announced); verify both and make
 * the checkpoint the resume point. A damaged or missing optimiser state rejects the checkpoint.
 */
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

/**
 * The previous resume point stays; `reason` says what was wrong, starting with one of
 * {@link CHECKPOINT_REJECT_CODES}.
 */
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
