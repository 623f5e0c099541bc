/**
 * A run whose FM experts start from the organiser's donor (`initFrom`, docs/method.md §7): the
 * checks at the API boundary, and the grant of such an FM expert carrying the donor's final
 * checkpoint, never a sibling's.
 */
import { createHash } from 'node:crypto';
import type { Dataset, Run } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpoints, experts, runs, workers } from '../../src/db/schema/index.js';
import { newId } from '../../src/ids.js';
import { buildGrant, tryLease } from '../../src/services/leases.js';
import { createToken } from '../../src/services/tokens.js';
import { auth, importFolderDataset, makeApp, type TestApp } from '../helpers.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('initFrom: FM experts initialised from an organiser-named donor', () => {
  let t: TestApp;
  let dataset: Dataset;
  let donor: Run;
  beforeAll(async () => {
    t = await makeApp();
    dataset = await importFolderDataset(t, {
      name: 'patterns',
      classes: 2,
      perClass: 8,
      resolution: 16,
      k: 2,
    });
    donor = (await create({ experts: 2, objectives: 'ddpm:1,fm:1' })).json() as Run;
  });
  afterAll(async () => t.close());

  function create(payload: Record<string, unknown>) {
    return t.app.inject({
      method: 'POST',
      url: '/api/v1/runs',
      headers: auth,
      payload: { datasetId: dataset.id, stepsPerExpert: 20, model: 'tiny', ...payload },
    });
  }

  /** Give expert `cluster` of `run` an accepted final checkpoint of `bytes` and mark it done. */
  async function finish(run: Run, cluster: number, bytes: Uint8Array): Promise<string> {
    const expert = run.experts[cluster]!;
    const key = `runs/${run.id}/experts/${cluster}/ckpt-000000020.safetensors`;
    await t.coordinator.store.put(key, bytes);
    const id = newId('checkpoint');
    const { db } = t.coordinator;
    db.insert(checkpoints)
      .values({
        id,
        expertId: expert.id,
        step: 20,
        key,
        sha256: sha256(bytes),
        bytes: bytes.length,
        final: true,
        status: 'accepted',
      })
      .run();
    db.update(experts)
      .set({ status: 'done', checkpointId: id, checkpointStep: 20, step: 20 })
      .where(eq(experts.id, expert.id))
      .run();
    return sha256(bytes);
  }

  const refused = async (payload: Record<string, unknown>) => {
    const res = await create(payload);
    expect(res.statusCode, res.body).toBe(400);
    return res.json().error as { code: string; details?: { reason?: string } };
  };

  it('refuses unknown runs and experts, and malformed references', async () => {
    const unknownRun = await refused({
      experts: 2,
      initFrom: { runId: 'run_0000000000nope', cluster: 0 },
    });
    expect(unknownRun).toMatchObject({ code: 'invalid_init_from', details: { reason: 'unknown' } });
    const unknownExpert = await refused({
      experts: 2,
      initFrom: { runId: donor.id, cluster: 7 },
    });
    expect(unknownExpert.details?.reason).toBe('unknown');
    for (const initFrom of [
      { runId: donor.id, cluster: -1 },
      { runId: donor.id },
      { runId: 42, cluster: 0 },
      { runId: donor.id, cluster: 0, checkpointUrl: 'http://elsewhere/x.safetensors' },
      `${donor.id}:0`,
    ]) {
      expect((await refused({ experts: 2, initFrom })).code).toBe('validation_error');
    }
  });

  it('refuses a donor whose run is not published', async () => {
    const err = await refused({ experts: 2, initFrom: { runId: donor.id, cluster: 0 } });
    expect(err).toMatchObject({ code: 'invalid_init_from', details: { reason: 'unfinished' } });
  });

  it('refuses an FM donor, a donor of another architecture, a run without FM experts, and initFmFromDdpm besides', async () => {
    await finish(donor, 0, new Uint8Array(64).fill(7));
    await finish(donor, 1, new Uint8Array(64).fill(9));
    t.coordinator.db.update(runs).set({ status: 'published' }).where(eq(runs.id, donor.id)).run();
    const ok = { runId: donor.id, cluster: 0 };

    const family = await refused({ experts: 2, initFrom: { runId: donor.id, cluster: 1 } });
    expect(family).toMatchObject({ code: 'invalid_init_from', details: { reason: 'family' } });
    const ddpmOnly = await refused({ experts: 2, objectives: 'ddpm', initFrom: ok });
    expect(ddpmOnly.details?.reason).toBe('family');
    for (const other of [{ model: 'micro' }, { model: 'tiny', patchSize: 2 }]) {
      const arch = await refused({ experts: 2, initFrom: ok, ...other });
      expect(arch).toMatchObject({
        code: 'invalid_init_from',
        details: { reason: 'architecture' },
      });
    }
    const both = await refused({ experts: 2, initFrom: ok, initFmFromDdpm: true });
    expect(both.details?.reason).toBe('conflict');
    // The preset's own patch size, given explicitly, is the same architecture.
    expect(
      (await create({ experts: 2, objectives: 'fm', initFrom: ok, patchSize: 4 })).statusCode,
    ).toBe(201);
  });

  it("grants an FM expert the donor's final checkpoint, not its finished DDPM sibling's", async () => {
    const donorSha = sha256(new Uint8Array(64).fill(7));
    const res = await create({
      experts: 2,
      objectives: 'ddpm:1,fm:1',
      initFrom: { runId: donor.id, cluster: 0 },
    });
    expect(res.statusCode, res.body).toBe(201);
    const run = res.json() as Run;
    expect(run.config.initFrom).toEqual({
      runId: donor.id,
      cluster: 0,
      expertId: donor.experts[0]!.id,
    });
    // The run's own DDPM expert is done: initFmFromDdpm would have started from it.
    const siblingSha = await finish(run, 0, new Uint8Array(64).fill(3));

    const { db, store, config } = t.coordinator;
    const token = createToken(db, 'tests');
    const workerId = newId('worker');
    db.insert(workers)
      .values({
        id: workerId,
        tokenId: token.id,
        name: 'fm-worker',
        objective: 'fm',
        backend: 'cpu',
        hardware: { cpus: 2, memoryBytes: 4e9, threads: 2 },
        online: true,
        connectedAt: new Date(),
        lastSeenAt: new Date(),
      })
      .run();
    // Earlier runs come first in the queue: give their FM experts away so this run's is leased.
    for (const r of t.coordinator.db.select().from(runs).all()) {
      if (r.id !== run.id)
        db.update(runs).set({ status: 'published' }).where(eq(runs.id, r.id)).run();
    }
    const leased = tryLease(db, workerId, 'fm', config.leaseTtlMs);
    expect(leased?.expert.id).toBe(run.experts[1]!.id);
    expect(leased!.expert.initFromExpertId).toBe(donor.experts[0]!.id);
    const grant = await buildGrant({ db, store, config }, leased!.lease, leased!.expert);
    expect(grant.resumeFrom).toBeUndefined();
    expect(grant.initFrom?.objective).toBe('ddpm');
    expect(grant.initFrom?.checkpoint.sha256).toBe(donorSha);
    expect(grant.initFrom?.checkpoint.sha256).not.toBe(siblingSha);
    // What the grant names is the donor's final checkpoint, bytes and all.
    const donorRow = db.select().from(experts).where(eq(experts.id, donor.experts[0]!.id)).get()!;
    const ckpt = db
      .select()
      .from(checkpoints)
      .where(eq(checkpoints.id, donorRow.checkpointId!))
      .get()!;
    expect(grant.initFrom?.checkpoint.bytes).toBe(ckpt.bytes);
    expect(sha256(await store.getBytes(ckpt.key))).toBe(donorSha);
  });
});
