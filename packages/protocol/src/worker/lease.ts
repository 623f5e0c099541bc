import { type Static, Type } from 'typebox';
import { Id } from '../common.js';
import { FmTimeSampling, ModelPreset, Objective, Schedule } from '../models.js';
import { ObjectiveSpec } from '../objective-spec.js';

/** Worker -> coordinator: give me an expert to train (matching my objective). */
export const LeaseRequest = Type.Object(
  { type: Type.Literal('lease.request') },
  { additionalProperties: false, title: 'LeaseRequest' },
);
export type LeaseRequest = Static<typeof LeaseRequest>;

/** A store object a worker may read: a presigned GET URL (or a coordinator-served one) and its hash. */
export const ObjectRef = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 8192 }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    bytes: Type.Integer({ minimum: 0 }),
    expiresAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type ObjectRef = Static<typeof ObjectRef>;

/** Coordinator -> worker: an expert to train, with everything needed to train it reproducibly. */
export const LeaseGrant = Type.Object(
  {
    type: Type.Literal('lease.grant'),
    leaseId: Id,
    expert: Type.Object(
      { id: Id, runId: Id, cluster: Type.Integer({ minimum: 0 }) },
      { additionalProperties: false },
    ),
    /** The objective to train, in full (an `any` expert takes the worker's family). */
    spec: ObjectiveSpec,
    /** Summary of `spec` for older workers: its family (see `specSummary`). */
    objective: Objective,
    /** Summary of `spec`: the DDPM noise schedule's kind; absent for flow matching. */
    schedule: Type.Optional(Schedule),
    /** Summary of `spec`: flow matching's training-time distribution; absent for DDPM. */
    timeSampling: Type.Optional(FmTimeSampling),
    /**
     * The training shard. Its held-out split never leaves the coordinator (it judges the expert on
     * it, docs/method.md §12): only its size is said.
     */
    shard: Type.Object(
      {
        train: ObjectRef,
        count: Type.Integer({ minimum: 0 }),
        valCount: Type.Integer({ minimum: 0 }),
      },
      { additionalProperties: false },
    ),
    model: Type.Object(
      {
        preset: ModelPreset,
        imageSize: Type.Integer({ minimum: 1 }),
        channels: Type.Integer({ minimum: 1, maximum: 4 }),
        numClasses: Type.Integer({ minimum: 0 }),
        /** Overrides the preset's patch size. */
        patchSize: Type.Optional(Type.Integer({ minimum: 1 })),
      },
      { additionalProperties: false },
    ),
    training: Type.Object(
      {
        targetSteps: Type.Integer({ minimum: 1 }),
        checkpointInterval: Type.Integer({ minimum: 1 }),
        batchSize: Type.Integer({ minimum: 1 }),
        learningRate: Type.Number({ exclusiveMinimum: 0 }),
        seed: Type.Integer({ minimum: 0 }),
      },
      { additionalProperties: false },
    ),
    /** The last accepted checkpoint: continue from its step. */
    resumeFrom: Type.Optional(
      Type.Object(
        {
          checkpoint: ObjectRef,
          step: Type.Integer({ minimum: 0 }),
          /**
           * Protocol 2: the checkpoint's optimiser state, when it was uploaded with one: training
           * continues exactly. Without it, from the checkpoint's weights with fresh moments.
           */
          optimizer: Type.Optional(ObjectRef),
        },
        { additionalProperties: false },
      ),
    ),
    /** A DDPM-family checkpoint to convert into this FM expert's initialisation (docs/method.md §7). */
    initFrom: Type.Optional(
      Type.Object({ checkpoint: ObjectRef, objective: Objective }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false, title: 'LeaseGrant' },
);
export type LeaseGrant = Static<typeof LeaseGrant>;

/** Coordinator -> worker: nothing to lease now; ask again later. */
export const LeaseNone = Type.Object(
  {
    type: Type.Literal('lease.none'),
    retryAfterMs: Type.Integer({ minimum: 0 }),
    reason: Type.String({ maxLength: 500 }),
  },
  { additionalProperties: false, title: 'LeaseNone' },
);
export type LeaseNone = Static<typeof LeaseNone>;

/** Worker -> coordinator: the final checkpoint is committed; the expert is trained. */
export const LeaseComplete = Type.Object(
  { type: Type.Literal('lease.complete'), leaseId: Id, checkpointId: Id },
  { additionalProperties: false, title: 'LeaseComplete' },
);
export type LeaseComplete = Static<typeof LeaseComplete>;

/** Worker -> coordinator: stopping (Ctrl-C, shutdown); the expert returns to the pool. */
export const LeaseRelease = Type.Object(
  { type: Type.Literal('lease.release'), leaseId: Id, reason: Type.String({ maxLength: 500 }) },
  { additionalProperties: false, title: 'LeaseRelease' },
);
export type LeaseRelease = Static<typeof LeaseRelease>;

/** Coordinator -> worker: the lease is gone (expired, run cancelled, token revoked); stop training it. */
export const LeaseRevoke = Type.Object(
  { type: Type.Literal('lease.revoke'), leaseId: Id, reason: Type.String({ maxLength: 500 }) },
  { additionalProperties: false, title: 'LeaseRevoke' },
);
export type LeaseRevoke = Static<typeof LeaseRevoke>;
