import { type Static, Type } from 'typebox';
import { Id } from '../common.js';
import { ExpertObjective } from '../models.js';

/** Worker -> coordinator, first frame: who the worker is and what it can do. */
export const Hello = Type.Object(
  {
    type: Type.Literal('hello'),
    /** Protocol versions the worker speaks; the coordinator picks the highest it also speaks. */
    protocols: Type.Array(Type.Integer({ minimum: 1 }), { minItems: 1, maxItems: 16 }),
    token: Type.String({ minLength: 8, maxLength: 200 }),
    /** The identity a previous welcome gave this worker (kept in its work dir), to re-attach. */
    workerId: Type.Optional(Id),
    name: Type.String({ minLength: 1, maxLength: 100 }),
    objective: ExpertObjective,
    backend: Type.String({ maxLength: 40 }),
    hardware: Type.Object(
      {
        cpus: Type.Integer({ minimum: 1, maximum: 4096 }),
        memoryBytes: Type.Integer({ minimum: 0, maximum: 2 ** 50 }),
        gpu: Type.Optional(
          Type.Object(
            {
              index: Type.Integer({ minimum: 0, maximum: 1024 }),
              name: Type.Optional(Type.String({ maxLength: 200 })),
            },
            { additionalProperties: false },
          ),
        ),
        threads: Type.Integer({ minimum: 1, maximum: 1024 }),
      },
      { additionalProperties: false },
    ),
    version: Type.String({ maxLength: 40 }),
  },
  { additionalProperties: false, title: 'Hello' },
);
export type Hello = Static<typeof Hello>;

/** Coordinator -> worker: accepted; the identity to keep and the timing contract. */
export const Welcome = Type.Object(
  {
    type: Type.Literal('welcome'),
    protocol: Type.Integer({ minimum: 1 }),
    workerId: Id,
    /** Send a heartbeat at least this often while holding a lease. */
    heartbeatMs: Type.Integer({ minimum: 100 }),
    /** A lease not renewed for this long expires and its expert returns to the pool. */
    leaseTtlMs: Type.Integer({ minimum: 100 }),
    /** Largest frame the coordinator accepts, in bytes. */
    maxFrameBytes: Type.Integer({ minimum: 1024 }),
  },
  { additionalProperties: false, title: 'Welcome' },
);
export type Welcome = Static<typeof Welcome>;
