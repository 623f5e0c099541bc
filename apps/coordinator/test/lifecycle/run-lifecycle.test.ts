import { afterEach, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/errors.js';
import { EVENTS } from '../../src/lifecycle/events.js';
import {
  canTransitionRun,
  RUN_TRANSITIONS,
  type RunTransition,
  transitionRun,
} from '../../src/lifecycle/run-lifecycle.js';
import { type LifecycleFixture, lifecycleFixture } from './fixtures.js';

describe('run lifecycle', () => {
  let f: LifecycleFixture;
  afterEach(() => f.close());

  /** Drive the run through `path`, one transaction per step. */
  const walk = (...path: RunTransition[]) => {
    for (const step of path) f.db.transaction((tx) => transitionRun(tx, f.run.id, step));
  };

  /** Expect `transition` to be refused with invalid_transition, leaving rows and events alone. */
  const expectRefused = (transition: RunTransition) => {
    const before = f.runRow();
    const events = f.eventCount();
    let thrown: unknown;
    try {
      f.db.transaction((tx) => transitionRun(tx, f.run.id, transition));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(DomainError);
    expect((thrown as DomainError).code).toBe('invalid_transition');
    expect((thrown as DomainError).details).toMatchObject({
      runId: f.run.id,
      from: before.status,
      to: RUN_TRANSITIONS[transition].to,
      event: transition,
    });
    expect(f.runRow()).toEqual(before);
    expect(f.eventCount()).toBe(events);
  };

  it('walks clustering -> training -> routing -> published, one event per transition', () => {
    f = lifecycleFixture();
    expect(f.runRow().status).toBe('clustering');
    walk(EVENTS.runTraining, EVENTS.runRouting, EVENTS.ensemblePublished);
    expect(f.runRow().status).toBe('published');
    expect(f.eventTypes()).toEqual([
      'run.created',
      'run.training',
      'run.routing',
      'ensemble.published',
    ]);
  });

  it('refuses to move a published run back to training, or to fail or cancel it', () => {
    f = lifecycleFixture();
    walk(EVENTS.runTraining, EVENTS.runRouting, EVENTS.ensemblePublished);
    expectRefused(EVENTS.runTraining);
    expectRefused(EVENTS.runRouting);
    expectRefused(EVENTS.runFailed);
    expectRefused(EVENTS.runCancelled);
  });

  it('refuses skipped stages and moves out of failed and cancelled', () => {
    f = lifecycleFixture();
    expectRefused(EVENTS.runRouting);
    expectRefused(EVENTS.ensemblePublished);
    walk(EVENTS.runCancelled);
    expect(f.runRow().status).toBe('cancelled');
    for (const t of Object.keys(RUN_TRANSITIONS) as RunTransition[]) expectRefused(t);
  });

  it('fails or cancels a run from any unfinished state, writing the extra columns given', () => {
    f = lifecycleFixture();
    walk(EVENTS.runTraining);
    const finishedAt = new Date(1_700_000_000_000);
    f.db.transaction((tx) =>
      transitionRun(tx, f.run.id, EVENTS.runFailed, {
        set: { error: 'boom', finishedAt },
        data: { error: 'boom' },
      }),
    );
    expect(f.runRow()).toMatchObject({ status: 'failed', error: 'boom', finishedAt });
    expect(f.eventTypes().at(-1)).toBe('run.failed');
    for (const s of ['draft', 'clustering', 'training', 'routing'] as const) {
      expect(canTransitionRun(s, EVENTS.runFailed)).toBe(true);
      expect(canTransitionRun(s, EVENTS.runCancelled)).toBe(true);
    }
  });

  it('undoes the rest of the transaction when a transition is refused', () => {
    f = lifecycleFixture();
    const events = f.eventCount();
    expect(() =>
      f.db.transaction((tx) => {
        transitionRun(tx, f.run.id, EVENTS.runTraining);
        transitionRun(tx, f.run.id, EVENTS.ensemblePublished);
      }),
    ).toThrow(DomainError);
    expect(f.runRow().status).toBe('clustering');
    expect(f.eventCount()).toBe(events);
  });

  it('says not_found for an unknown run', () => {
    f = lifecycleFixture();
    expect(() =>
      f.db.transaction((tx) => transitionRun(tx, 'run_nope', EVENTS.runCancelled)),
    ).toThrow(expect.objectContaining({ code: 'not_found' }));
  });
});
