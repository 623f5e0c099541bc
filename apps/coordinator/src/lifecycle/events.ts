import type { Db, Tx } from '../db/database.js';
import { events } from '../db/schema/index.js';

/**
 * Every event type the coordinator writes, by name: the one list the event log's `type` column
 * takes its values from. Run and expert transitions each write one of these (the transition
 * tables in run-lifecycle.ts and expert-lifecycle.ts say which); the others record what happened
 * outside those state machines. The dashboard and tests read the strings: they do not change.
 */
export const EVENTS = {
  runCreated: 'run.created',
  runTraining: 'run.training',
  runRouting: 'run.routing',
  runFailed: 'run.failed',
  runCancelled: 'run.cancelled',
  /** An ensemble of the run was published (and the run with it, unless it already was). */
  ensemblePublished: 'ensemble.published',
  expertTraining: 'expert.training',
  expertValidating: 'expert.validating',
  expertValidated: 'expert.validated',
  expertDone: 'expert.done',
  expertRejected: 'expert.rejected',
  leaseGranted: 'lease.granted',
  leaseReleased: 'lease.released',
  leaseExpired: 'lease.expired',
  leaseRevoked: 'lease.revoked',
  checkpointAccepted: 'checkpoint.accepted',
  checkpointRejected: 'checkpoint.rejected',
  routerTrained: 'router.trained',
  jobFailed: 'job.failed',
  workerConnected: 'worker.connected',
  tokenCreated: 'token.created',
  tokenRevoked: 'token.revoked',
  datasetImported: 'dataset.imported',
  clusteringCreated: 'clustering.created',
} as const;
export type EventType = (typeof EVENTS)[keyof typeof EVENTS];

export interface EventFields {
  runId?: string | null;
  expertId?: string | null;
  workerId?: string | null;
  datasetId?: string | null;
  data?: Record<string, unknown>;
}

let stateGeneration = 0;

/**
 * A counter bumped by every state change this process writes (each writes an event row, so
 * {@link recordEvent} bumps it; the few writes without one call {@link stateChanged}). What is
 * cached from the database in memory (the heartbeat path's lease rows, services/lease-renewals.ts)
 * is valid while it stands still; writes by other processes are seen through `PRAGMA data_version`.
 */
export function stateGenerationNow(): number {
  return stateGeneration;
}

/** Say that a lease's or an expert's state changed without an event row. */
export function stateChanged(): void {
  stateGeneration++;
}

/** Append one row to the event log, inside the caller's transaction (the only event insert). */
export function recordEvent(tx: Db | Tx, type: EventType, fields: EventFields = {}): void {
  stateGeneration++;
  tx.insert(events)
    .values({
      type,
      runId: fields.runId ?? null,
      expertId: fields.expertId ?? null,
      workerId: fields.workerId ?? null,
      datasetId: fields.datasetId ?? null,
      ...(fields.data ? { data: fields.data } : {}),
    })
    .run();
}
