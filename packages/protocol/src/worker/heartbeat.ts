import { type Static, Type } from 'typebox';
import { Id } from '../common.js';

/**
 * Worker -> coordinator: progress; renews the lease. `paused`: the volunteer paused training (the
 * worker's `pause` command or SIGUSR1); the coordinator keeps a paused lease for its paused-lease
 * grace even without heartbeats, and no longer than that grace however many it gets. Sent only
 * while paused (absent means training), so a heartbeat from a worker that never pauses is the
 * same frame as before.
 */
export const Heartbeat = Type.Object(
  {
    type: Type.Literal('heartbeat'),
    leaseId: Id,
    step: Type.Integer({ minimum: 0 }),
    loss: Type.Union([Type.Number(), Type.Null()]),
    imagesPerSec: Type.Number({ minimum: 0 }),
    paused: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, title: 'Heartbeat' },
);
export type Heartbeat = Static<typeof Heartbeat>;

/** Coordinator -> worker: lease renewed until `expiresAt`. */
export const HeartbeatAck = Type.Object(
  {
    type: Type.Literal('heartbeat.ack'),
    leaseId: Id,
    expiresAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false, title: 'HeartbeatAck' },
);
export type HeartbeatAck = Static<typeof HeartbeatAck>;
