import { type Static, Type } from 'typebox';
import { Id } from '../common.js';

/** Worker -> coordinator: progress; renews the lease. */
export const Heartbeat = Type.Object(
  {
    type: Type.Literal('heartbeat'),
    leaseId: Id,
    step: Type.Integer({ minimum: 0 }),
    loss: Type.Union([Type.Number(), Type.Null()]),
    imagesPerSec: Type.Number({ minimum: 0 }),
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
