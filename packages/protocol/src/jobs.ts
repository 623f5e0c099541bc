import { type Static, Type } from 'typebox';
import { Id, Timestamp } from './common.js';

/**
 * Queue names of coordinator-side jobs. Processors are plain async functions keyed by these;
 * they run in-process by default and through BullMQ when Redis is configured.
 */
export const JOB_NAMES = [
  'import-dataset',
  'cluster-dataset',
  'validate-checkpoint',
  'train-router',
  'publish-ensemble',
  'score-ensemble',
] as const;
export const JobName = Type.Enum(JOB_NAMES);
export type JobName = Static<typeof JobName>;

export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed'] as const;
export const JobStatus = Type.Enum(JOB_STATUSES);
export type JobStatus = Static<typeof JobStatus>;

export const JobProgress = Type.Object({
  stage: Type.String(),
  done: Type.Number(),
  total: Type.Number(),
});
export type JobProgress = Static<typeof JobProgress>;

export const Job = Type.Object(
  {
    id: Id,
    name: JobName,
    status: JobStatus,
    attempts: Type.Integer(),
    progress: Type.Union([JobProgress, Type.Null()]),
    result: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
    error: Type.Union([Type.String(), Type.Null()]),
    createdAt: Timestamp,
    startedAt: Type.Union([Timestamp, Type.Null()]),
    finishedAt: Type.Union([Timestamp, Type.Null()]),
  },
  { title: 'Job' },
);
export type Job = Static<typeof Job>;

export const JobAccepted = Type.Object(
  { job: Job, links: Type.Object({ job: Type.String() }) },
  { title: 'JobAccepted' },
);
export type JobAccepted = Static<typeof JobAccepted>;

export const JobList = Type.Object({ jobs: Type.Array(Job) }, { title: 'JobList' });
export type JobList = Static<typeof JobList>;

export const JobListQuery = Type.Object(
  {
    status: Type.Optional(JobStatus),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
  },
  { additionalProperties: false },
);
export type JobListQuery = Static<typeof JobListQuery>;
