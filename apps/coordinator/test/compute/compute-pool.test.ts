/**
 * The compute pool's failure paths with real threads: a thread that dies fails the tasks it held
 * and the next task gets a fresh one; a caller already gone never starts a task; errors keep the
 * class the error plugin and the job queue look for.
 */
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromWireError, toWireError } from '../../src/compute/messages.js';
import { DomainError, PermanentJobError } from '../../src/errors.js';
import { resolveSettings } from '../../src/services/sampling.js';
import { publishTestEnsemble } from '../ensembles/test-ensemble.js';
import { makeApp, type TestApp } from '../helpers.js';

describe('compute pool', () => {
  let t: TestApp;
  let ensembleId: string;
  beforeAll(async () => {
    t = await makeApp();
    ensembleId = (await publishTestEnsemble(t.coordinator)).id;
  });
  afterAll(async () => t.close());

  const settings = async (body: object) =>
    resolveSettings(
      { count: 2, steps: 2, seed: 1, ...body },
      await t.coordinator.sampling.describe(ensembleId),
    );
  /** The pool's live Workers (private: the test stops one from outside, as a crash would). */
  const workers = () =>
    (t.coordinator.compute as unknown as { threads: { worker: Worker }[] }).threads.map(
      (x) => x.worker,
    );

  it('a thread that dies fails the tasks it held; the next task runs on a fresh thread', async () => {
    const pool = t.coordinator.compute!;
    const long = pool.run('sample', {
      ensembleId,
      settings: await settings({ count: 64, steps: 100, sampler: 'heun', routing: 'full' }),
    });
    const outcome = long.catch((err: Error) => err);
    expect(pool.busy).toBe(1);
    const [first] = workers();
    expect(first).toBeInstanceOf(Worker);
    await first!.terminate();
    const err = await outcome;
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/the compute thread stopped/);
    expect(pool.busy).toBe(0);
    const out = await pool.run('sample', { ensembleId, settings: await settings({}) });
    expect(out.perSample).toHaveLength(2);
    expect(workers()).toHaveLength(1);
    expect(workers()[0]).not.toBe(first);
  });

  it('a caller already gone starts nothing', async () => {
    const pool = t.coordinator.compute!;
    const gone = new AbortController();
    gone.abort(new Error('gone'));
    await expect(
      pool.run('sample', { ensembleId, settings: await settings({}) }, { signal: gone.signal }),
    ).rejects.toThrow('gone');
    expect(pool.busy).toBe(0);
  });

  it('errors keep their class and code across the thread boundary', async () => {
    const domain = fromWireError(toWireError(new DomainError('busy', 'too many')));
    expect(domain).toBeInstanceOf(DomainError);
    expect(domain).toMatchObject({ code: 'busy', message: 'too many' });
    const permanent = fromWireError(toWireError(new PermanentJobError('bad input')));
    expect(permanent).toBeInstanceOf(PermanentJobError);
    // From a real thread: an ensemble the store does not hold.
    const missing = await t.coordinator
      .compute!.run('sample', { ensembleId: 'ens_missing', settings: await settings({}) })
      .catch((e: Error) => e);
    expect(missing).toBeInstanceOf(Error);
    expect((missing as Error).name).toBe('ObjectNotFoundError');
    expect((missing as Error).message).toContain('ens_missing');
  });
});
