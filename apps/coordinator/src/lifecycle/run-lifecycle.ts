/**
 * The run state machine (docs/architecture.md "State and lifecycles"):
 *
 *   clustering -> training -> routing -> published        (+ failed, cancelled from any unfinished)
 *
 * Each allowed transition is named by the event it writes. {@link transitionRun} is the only
 * writer of `runs.status` after a run's row is created.
 */
import type { RunStatus } from '@archipelago/protocol';
import { and, eq } from 'drizzle-orm';
import type { Tx } from '../db/database.js';
import { type RunRow, runs } from '../db/schema/index.js';
import { DomainError, notFound } from '../errors.js';
import { EVENTS, type EventFields, recordEvent } from './events.js';

/** A run is created in this state; binding it to a clustering starts its training. */
export const INITIAL_RUN_STATUS: RunStatus = 'clustering';

/** A run in one of these states has finished: nothing moves it any more. */
export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = ['published', 'failed', 'cancelled'];

const UNFINISHED: readonly RunStatus[] = ['draft', 'clustering', 'training', 'routing'];

/** Allowed transitions: the event each writes, from which states, to which. */
export const RUN_TRANSITIONS = {
  [EVENTS.runTraining]: { from: ['clustering'], to: 'training' },
  [EVENTS.runRouting]: { from: ['training'], to: 'routing' },
  [EVENTS.ensemblePublished]: { from: ['routing'], to: 'published' },
  [EVENTS.runFailed]: { from: UNFINISHED, to: 'failed' },
  [EVENTS.runCancelled]: { from: UNFINISHED, to: 'cancelled' },
} as const satisfies Record<string, { from: readonly RunStatus[]; to: RunStatus }>;
export type RunTransition = keyof typeof RUN_TRANSITIONS;

export function canTransitionRun(status: RunStatus, transition: RunTransition): boolean {
  return (RUN_TRANSITIONS[transition].from as readonly RunStatus[]).includes(status);
}

export interface RunTransitionDetails extends Omit<EventFields, 'runId'> {
  /** Other columns the transition sets (error, finishedAt, clusteringId). */
  set?: Partial<Omit<RunRow, 'id' | 'status'>>;
}

/**
 * Move a run along `transition` inside the caller's transaction: check its current status,
 * write the new one (and `details.set`) and the transition's event row.
 *
 * @throws {DomainError} `not_found` for an unknown run; `invalid_transition` when the run's
 *   status does not allow it (nothing is written).
 */
export function transitionRun(
  tx: Tx,
  runId: string,
  transition: RunTransition,
  details: RunTransitionDetails = {},
): RunRow {
  const run = tx.select().from(runs).where(eq(runs.id, runId)).get();
  if (!run) throw notFound('run', runId);
  const { from, to } = RUN_TRANSITIONS[transition];
  if (!canTransitionRun(run.status, transition)) {
    throw new DomainError(
      'invalid_transition',
      `run ${runId} is ${run.status}: ${transition} moves a run from ${from.join(' or ')} to ${to}`,
      { runId, from: run.status, to, event: transition },
    );
  }
  const { set, ...event } = details;
  const updated = tx
    .update(runs)
    .set({ ...set, status: to })
    .where(and(eq(runs.id, runId), eq(runs.status, run.status)))
    .returning()
    .get()!;
  recordEvent(tx, transition, { ...event, runId });
  return updated;
}
