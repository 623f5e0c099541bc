import { afterEach, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/errors.js';
import { EVENTS } from '../../src/lifecycle/events.js';
import {
  canTransitionExpert,
  EXPERT_TRANSITIONS,
  type ExpertTransition,
  LEASE_END_TRANSITIONS,
  transitionExpert,
} from '../../src/lifecycle/expert-lifecycle.js';
import { type LifecycleFixture, lifecycleFixture } from './fixtures.js';

describe('expert lifecycle', () => {
  let f: LifecycleFixture;
  afterEach(() => f.close());

  const expertId = () => f.run.experts[0]!.id;
  const walk = (...path: ExpertTransition[]) => {
    for (const step of path) f.db.transaction((tx) => transitionExpert(tx, expertId(), step));
  };
  const expectRefused = (transition: ExpertTransition) => {
    const before = f.expertRow(expertId());
    const events = f.eventCount();
    let thrown: unknown;
    try {
      f.db.transaction((tx) =>
        transitionExpert(tx, expertId(), transition, { set: { workerId: 'worker_x', step: 3 } }),
      );
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(DomainError);
    expect(thrown).toMatchObject({
      code: 'invalid_transition',
      details: { expertId: expertId(), from: before.status, event: transition },
    });
    expect(f.expertRow(expertId())).toEqual(before);
    expect(f.eventCount()).toBe(events);
  };

  it('walks pending -> leased -> training -> validating -> done, one event per transition', () => {
    f = lifecycleFixture();
    expect(f.expertRow(expertId()).status).toBe('pending');
    f.db.transaction((tx) =>
      transitionExpert(tx, expertId(), EVENTS.leaseGranted, {
        set: { workerId: 'worker_1' },
        workerId: 'worker_1',
        data: { leaseId: 'lease_1' },
      }),
    );
    expect(f.expertRow(expertId())).toMatchObject({ status: 'leased', workerId: 'worker_1' });
    walk(EVENTS.expertTraining, EVENTS.expertValidating, EVENTS.expertDone);
    expect(f.expertRow(expertId()).status).toBe('done');
    expect(f.eventTypes().slice(1)).toEqual([
      'lease.granted',
      'expert.training',
      'expert.validating',
      'expert.done',
    ]);
  });

  it('refuses to lease a done expert again, or to return it to the pool', () => {
    f = lifecycleFixture();
    walk(EVENTS.leaseGranted, EVENTS.expertValidating, EVENTS.expertDone);
    expectRefused(EVENTS.leaseGranted);
    for (const t of Object.values(LEASE_END_TRANSITIONS)) expectRefused(t);
    expectRefused(EVENTS.expertRejected);
    expectRefused(EVENTS.expertTraining);
  });

  it('returns a leased or training expert to pending when its lease ends, not a validating one', () => {
    f = lifecycleFixture();
    walk(EVENTS.leaseGranted, EVENTS.leaseExpired);
    expect(f.expertRow(expertId()).status).toBe('pending');
    walk(EVENTS.leaseGranted, EVENTS.expertTraining, EVENTS.leaseRevoked);
    expect(f.expertRow(expertId()).status).toBe('pending');
    walk(EVENTS.leaseGranted, EVENTS.expertValidating);
    for (const t of Object.values(LEASE_END_TRANSITIONS)) {
      expect(canTransitionExpert('validating', t)).toBe(false);
      expectRefused(t);
    }
    walk(EVENTS.expertRejected);
    expect(f.expertRow(expertId()).status).toBe('pending');
  });

  it('refuses everything but a lease from pending', () => {
    f = lifecycleFixture();
    const allowed = (Object.keys(EXPERT_TRANSITIONS) as ExpertTransition[]).filter((t) =>
      canTransitionExpert('pending', t),
    );
    expect(allowed).toEqual([EVENTS.leaseGranted]);
    for (const t of Object.keys(EXPERT_TRANSITIONS) as ExpertTransition[])
      if (t !== EVENTS.leaseGranted) expectRefused(t);
  });
});
