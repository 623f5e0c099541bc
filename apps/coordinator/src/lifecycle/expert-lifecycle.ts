/**
 * The expert state machine (docs/architecture.md "State and lifecycles"):
 *
 *   pending -> leased -> training -> validating -> done
 *
 * A lease that ends early (released, expired, revoked) returns a leased or training expert to
 * `pending` at its last accepted checkpoint; a rejected final checkpoint returns a validating one.
 * Each allowed transition is named by the event it writes. {@link transitionExpert} is the only
 * writer of `experts.status` after an expert's row is created.
 */
import type { ExpertStatus } from '@archipelago/protocol';
import { and, eq } from 'drizzle-orm';
import type { Tx } from '../db/database.js';
import { type ExpertRow, experts } from '../db/schema/index.js';
import { DomainError, notFound } from '../errors.js';
import { EVENTS, type EventFields, recordEvent } from './events.js';

/** An expert is created in this state. */
export const INITIAL_EXPERT_STATUS: ExpertStatus = 'pending';

const HOLDING_A_LEASE: readonly ExpertStatus[] = ['leased', 'training'];

/** Allowed transitions: the event each writes, from which states, to which. */
export const EXPERT_TRANSITIONS = {
  [EVENTS.leaseGranted]: { from: ['pending'], to: 'leased' },
  [EVENTS.expertTraining]: { from: ['leased'], to: 'training' },
  [EVENTS.leaseReleased]: { from: HOLDING_A_LEASE, to: 'pending' },
  [EVENTS.leaseExpired]: { from: HOLDING_A_LEASE, to: 'pending' },
  [EVENTS.leaseRevoked]: { from: HOLDING_A_LEASE, to: 'pending' },
  [EVENTS.expertValidating]: { from: HOLDING_A_LEASE, to: 'validating' },
  [EVENTS.expertDone]: { from: ['validating'], to: 'done' },
  [EVENTS.expertRejected]: { from: ['validating'], to: 'pending' },
} as const satisfies Record<string, { from: readonly ExpertStatus[]; to: ExpertStatus }>;
export type ExpertTransition = keyof typeof EXPERT_TRANSITIONS;

/** The transition of a lease that ends early, by how the lease ended. */
export const LEASE_END_TRANSITIONS = {
  released: EVENTS.leaseReleased,
  expired: EVENTS.leaseExpired,
  revoked: EVENTS.leaseRevoked,
} as const satisfies Record<string, ExpertTransition>;

export function canTransitionExpert(status: ExpertStatus, transition: ExpertTransition): boolean {
  return (EXPERT_TRANSITIONS[transition].from as readonly ExpertStatus[]).includes(status);
}

export interface ExpertTransitionDetails extends Omit<EventFields, 'runId' | 'expertId'> {
  /** Other columns the transition sets (worker, step, resume point, validation results). */
  set?: Partial<Omit<ExpertRow, 'id' | 'runId' | 'status'>>;
}

/**
 * Move an expert along `transition` inside the caller's transaction: check its current status,
 * write the new one (and `details.set`) and the transition's event row.
 *
 * @throws {DomainError} `not_found` for an unknown expert; `invalid_transition` when the
 *   expert's status does not allow it (nothing is written).
 */
export function transitionExpert(
  tx: Tx,
  expertId: string,
  transition: ExpertTransition,
  details: ExpertTransitionDetails = {},
): ExpertRow {
  const expert = tx.select().from(experts).where(eq(experts.id, expertId)).get();
  if (!expert) throw notFound('expert', expertId);
  const { from, to } = EXPERT_TRANSITIONS[transition];
  if (!canTransitionExpert(expert.status, transition)) {
    throw new DomainError(
      'invalid_transition',
      `expert ${expertId} is ${expert.status}: ${transition} moves an expert from ${from.join(' or ')} to ${to}`,
      { expertId, from: expert.status, to, event: transition },
    );
  }
  const { set, ...event } = details;
  const updated = tx
    .update(experts)
    .set({ ...set, status: to })
    .where(and(eq(experts.id, expertId), eq(experts.status, expert.status)))
    .returning()
    .get()!;
  recordEvent(tx, transition, { ...event, runId: expert.runId, expertId });
  return updated;
}
