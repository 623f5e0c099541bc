/**
 * The event log and the live stream the dashboard listens to.
 *
 * `GET /api/v1/runs/:id/events` pages the log newest first; `GET /api/v1/live` is a
 * server-sent-events stream (`text/event-stream`) whose `data:` lines are {@link LiveMessage}s.
 */
import { type Static, type TSchema, Type } from 'typebox';
import { Id, Timestamp } from './common.js';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const RunEvent = Type.Object(
  {
    id: Type.Integer(),
    at: Timestamp,
    type: Type.String({ description: 'e.g. lease.granted, checkpoint.accepted, expert.validated' }),
    runId: Nullable(Type.String()),
    expertId: Nullable(Type.String()),
    workerId: Nullable(Type.String()),
    data: Nullable(Type.Record(Type.String(), Type.Unknown())),
  },
  { title: 'RunEvent' },
);
export type RunEvent = Static<typeof RunEvent>;

export const EventList = Type.Object({ events: Type.Array(RunEvent) }, { title: 'EventList' });
export type EventList = Static<typeof EventList>;

export const EventQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    /** Only events with a smaller id (paging back). */
    before: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);
export type EventQuery = Static<typeof EventQuery>;

/** One point of an expert's training curve (recorded from heartbeats, at most one per step). */
export const MetricPoint = Type.Object(
  {
    step: Type.Integer(),
    loss: Type.Number(),
    imagesPerSec: Nullable(Type.Number()),
    at: Timestamp,
  },
  { additionalProperties: false },
);
export type MetricPoint = Static<typeof MetricPoint>;

export const ExpertMetrics = Type.Object(
  { expertId: Id, cluster: Type.Integer(), points: Type.Array(MetricPoint) },
  { title: 'ExpertMetrics' },
);
export const RunMetrics = Type.Object(
  { runId: Id, experts: Type.Array(ExpertMetrics) },
  { title: 'RunMetrics' },
);
export type RunMetrics = Static<typeof RunMetrics>;

/** What the live stream sends: something changed; the client refetches what it shows. */
export const LiveMessage = Type.Union(
  [
    Type.Object({ type: Type.Literal('hello'), at: Timestamp, lastEventId: Type.Integer() }),
    Type.Object({ type: Type.Literal('event'), event: RunEvent }),
    Type.Object({
      type: Type.Literal('progress'),
      runId: Type.String(),
      expertId: Type.String(),
      cluster: Type.Integer(),
      status: Type.String(),
      step: Type.Integer(),
      targetSteps: Type.Integer(),
      loss: Nullable(Type.Number()),
      imagesPerSec: Nullable(Type.Number()),
      /** When the worker of its active lease paused training (a volunteer's pause), or null. */
      pausedSince: Type.Optional(Nullable(Timestamp)),
      at: Timestamp,
    }),
    Type.Object({ type: Type.Literal('ping'), at: Timestamp }),
  ],
  { title: 'LiveMessage' },
);
export type LiveMessage = Static<typeof LiveMessage>;
