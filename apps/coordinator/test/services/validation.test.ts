import { decodeShard } from '@archipelago/data';
import { buildNetwork, ExpertTrainer, loadCheckpoint, saveCheckpoint } from '@archipelago/models';
import type { Dataset, Run } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkpoints,
  type ExpertRow,
  events,
  experts,
  runs,
  shards,
} from '../../src/db/schema/index.js';
import { newId } from '../../src/ids.js';
import {
  expectedArchitecture,
  objectiveConfigOf,
  validateCheckpoint,
} from '../../src/services/validation.js';
import { auth, makeApp, makeImageFolder, type TestApp, waitForJob } from '../helpers.js';

const STEPS = 150;

/**
 * Real checkpoints from a real trainer on the run's own shards: two clusters of very different
 * images (left half bright / top half bright), so an expert trained on one fits it far better.
 */
describe('checkpoint validation', () => {
  let t: TestApp;
  let run: Run;
  let ddpm: ExpertRow;
  const trained = new Map<number, Uint8Array>();

  async function train(
    expert: ExpertRow,
    onCluster: number,
    fingerprintOf: number,
  ): Promise<Uint8Array> {
    const { db, store } = t.coordinator;
    const runRow = db.select().from(runs).where(eq(runs.id, run.id)).get()!;
    const shardOf = (k: number) =>
      db
        .select()
        .from(shards)
        .where(eq(shards.clusteringId, runRow.clusteringId!))
        .all()
        .find((s) => s.cluster === k && s.split === 'train')!;
    const data = shardOf(onCluster);
    const set = decodeShard(await store.getBytes(data.key));
    const { kind: _kind, ...config } = expectedArchitecture(runRow) as { kind: 'dit' } & Record<
      string,
      unknown
    >;
    const trainer = await ExpertTrainer.create({
      network: { kind: 'dit', config: config as never },
      objective: objectiveConfigOf(expert),
      optimizer: { learningRate: 2e-3 },
      seed: 1,
    });
    const size = set.height * set.width * set.channels;
    for (let step = 0; step < STEPS; step++) {
      const x = new Float32Array(16 * size);
      const labels = new Int32Array(16);
      for (let b = 0; b < 16; b++) {
        const i = (step * 16 + b) % set.count;
        for (let p = 0; p < size; p++) x[b * size + p] = set.pixels[i * size + p]! / 127.5 - 1;
        labels[b] = set.labels[i]!;
      }
      await trainer.step({ data: x, shape: [16, set.height, set.width, set.channels] }, labels);
    }
    const bytes = await trainer.save({ dataFingerprint: shardOf(fingerprintOf).sha256 });
    await trainer.dispose();
    return bytes;
  }

  /** Put `bytes` in the store as the expert's final checkpoint, awaiting validation. */
  async function submit(expert: ExpertRow, bytes: Uint8Array): Promise<string> {
    const { db, store } = t.coordinator;
    const id = newId('checkpoint');
    const key = `runs/${run.id}/experts/${expert.cluster}/${id}.safetensors`;
    const info = await store.put(key, bytes);
    db.insert(checkpoints)
      .values({
        id,
        expertId: expert.id,
        step: STEPS,
        key,
        sha256: info.sha256!,
        bytes: bytes.byteLength,
        final: true,
        status: 'accepted',
      })
      .run();
    db.update(experts)
      .set({ status: 'validating', checkpointId: id, checkpointStep: STEPS, step: STEPS })
      .where(eq(experts.id, expert.id))
      .run();
    return id;
  }

  const validate = (expert: ExpertRow, checkpointId: string) =>
    validateCheckpoint(
      { db: t.coordinator.db, store: t.coordinator.store, log: t.coordinator.log, lossRatio: 0.6 },
      { expertId: expert.id, checkpointId },
    );

  const expertRow = (id: string) =>
    t.coordinator.db.select().from(experts).where(eq(experts.id, id)).get()!;

  beforeAll(async () => {
    t = await makeApp();
    const folder = await makeImageFolder(t.dataDir, 2, 40);
    const imp = await t.app.inject({
      method: 'POST',
      url: '/api/v1/datasets',
      headers: auth,
      payload: {
        name: 'v',
        source: { kind: 'folder', path: folder },
        resolution: 8,
        channels: 1,
        cluster: { k: 2, valFraction: 0.25 },
      },
    });
    const job = await waitForJob(t.app, imp.json().job.id);
    const ds = (
      await t.app.inject({ method: 'GET', url: `/api/v1/datasets/${job.result!.datasetId}` })
    ).json() as Dataset;
    run = (
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/runs',
        headers: auth,
        payload: {
          datasetId: ds.id,
          experts: 2,
          objectives: 'ddpm:2',
          stepsPerExpert: STEPS,
          model: 'tiny',
        },
      })
    ).json() as Run;
    expect(run.status).toBe('training');
    ddpm = t.coordinator.db
      .select()
      .from(experts)
      .where(eq(experts.runId, run.id))
      .all()
      .find((e) => e.cluster === 0)!;
    const other = t.coordinator.db
      .select()
      .from(experts)
      .where(eq(experts.runId, run.id))
      .all()
      .find((e) => e.cluster === 1)!;
    trained.set(0, await train(ddpm, 0, 0));
    trained.set(1, await train(other, 1, 1));
  }, 180_000);
  afterAll(async () => t.close());

  it('rejects a checkpoint with a NaN, naming the tensor; the expert goes back to pending', async () => {
    const bytes = Uint8Array.from(trained.get(0)!);
    // The last 4 bytes belong to the last tensor's last float32: make it NaN.
    bytes.set([0x00, 0x00, 0xc0, 0x7f], bytes.length - 4);
    const id = await submit(ddpm, bytes);
    const outcome = await validate(ddpm, id);
    expect(outcome.accepted).toBe(false);
    expect(outcome.reason).toMatch(/non_finite: .*NaN/i);
    const e = expertRow(ddpm.id);
    expect(e).toMatchObject({ status: 'pending', checkpointId: null, step: 0 });
    expect(e.validationError).toMatch(/non_finite/);
    const ck = t.coordinator.db.select().from(checkpoints).where(eq(checkpoints.id, id)).get()!;
    expect(ck.status).toBe('rejected');
    expect(await t.coordinator.store.head(ck.key)).toBeNull();
  });

  it('rejects a checkpoint that says it was trained on another shard', async () => {
    const id = await submit(ddpm, trained.get(1)!);
    const outcome = await validate(ddpm, id);
    expect(outcome.accepted).toBe(false);
    expect(outcome.reason).toMatch(/^wrong_shard: the checkpoint was trained on data/);
  });

  it('rejects an untrained network that claims the full training: its loss is no better than zero output', async () => {
    const { meta } = loadCheckpoint(trained.get(0)!);
    const { kind: _kind, ...config } = meta.architecture as { kind: string } & Record<
      string,
      unknown
    >;
    const fresh = buildNetwork({ kind: 'dit', config } as never, 3);
    const bytes = await saveCheckpoint({ params: fresh.params, meta: { ...meta, step: STEPS } });
    fresh.dispose();
    const id = await submit(ddpm, bytes);
    const outcome = await validate(ddpm, id);
    expect(outcome.accepted).toBe(false);
    expect(outcome.reason).toMatch(/^loss_too_high: held-out loss/);
    // The DiT's output projection starts at zero: exactly the baseline.
    expect(outcome.loss!).toBeCloseTo(outcome.baseline!, 4);
    const ev = t.coordinator.db.select().from(events).where(eq(events.expertId, ddpm.id)).all();
    expect(ev.filter((e) => e.type === 'expert.rejected')).toHaveLength(3);
  });

  it('accepts the honest checkpoint: held-out loss well under an untrained network, recorded', async () => {
    const id = await submit(ddpm, trained.get(0)!);
    const outcome = await validate(ddpm, id);
    expect(outcome.reason).toBeUndefined();
    expect(outcome.accepted).toBe(true);
    expect(outcome.loss!).toBeLessThan(0.6 * outcome.baseline!);
    // Recorded for every cluster; on these two very different clusters it fits its own best.
    expect(outcome.crossLoss).toHaveLength(2);
    expect(outcome.crossLoss![0]!).toBeLessThan(outcome.crossLoss![1]!);
    expect(expertRow(ddpm.id)).toMatchObject({
      status: 'done',
      checkpointId: id,
      validationError: null,
    });
    // A second, stale run of the same job changes nothing.
    expect(await validate(ddpm, id)).toMatchObject({ skipped: true, accepted: true });
  });
});
