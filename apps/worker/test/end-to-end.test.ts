/**
 * Real processes on loopback: a coordinator (`serve`, heartbeat 300 ms, lease TTL 3 s: short,
 * yet long enough that a loaded machine never expires a lease by accident) and
 * worker processes on the WebAssembly backend training tiny DiT experts on 8x8 MNIST.
 *
 * One coordinator serves the whole file and leases oldest-run-first, so each test finishes the
 * run it creates (the last one leaves its run unfinished).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadCheckpoint, TRAINING_METADATA_KEY } from '@archipelago/models';
import type { Expert, Run } from '@archipelago/protocol';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorProcess, freePort, type Proc, startWorker, until } from './harness.js';

interface CheckpointRow {
  id: string;
  expert_id: string;
  lease_id: string;
  step: number;
  key: string;
  sha256: string;
  bytes: number;
  final: number;
  status: string;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('worker processes against a real coordinator', () => {
  let dir: string;
  let coord: CoordinatorProcess;
  let token: string;
  let datasetId: string;
  const procs: Proc[] = [];

  const worker = (
    label: string,
    objective: 'ddpm' | 'fm',
    extra: { exitWhenIdle?: boolean } = {},
  ) => {
    const p = startWorker(label, {
      coordinator: coord.url,
      token,
      objective,
      workDir: path.join(dir, `work-${label}`),
      ...extra,
    });
    procs.push(p);
    return p;
  };
  const newRun = (steps: number, extra: Record<string, unknown> = {}) =>
    coord.createRun({
      datasetId,
      experts: 2,
      objectives: 'ddpm:1,fm:1',
      stepsPerExpert: steps,
      checkpointInterval: 10,
      batchSize: 8,
      model: 'tiny',
      ...extra,
    });
  /**
   * The run once the coordinator has validated every expert's final checkpoint and finished the
   * jobs that follow (router, manifest), so that none of them runs into the next test.
   */
  const validated = (runId: string): Promise<Run> =>
    until(
      'every expert to pass validation and the run to be published',
      async () => {
        const r = await coord.run(runId);
        if (r.status === 'failed') throw new Error(`run failed: ${r.error}`);
        return r.experts.every((e) => e.status === 'done') && r.status === 'published' ? r : null;
      },
      90_000,
      100,
    );
  const expertOf = (run: Run, objective: 'ddpm' | 'fm'): Expert =>
    run.experts.find((e) => e.objective === objective)!;
  /** Read the coordinator's database (read-only, beside the running coordinator). */
  const query = <T>(sql: string, ...params: unknown[]): T[] => {
    const db = new Database(path.join(coord.dataDir, 'coordinator.sqlite'), {
      readonly: true,
      fileMustExist: true,
    });
    try {
      return db.prepare(sql).all(...params) as T[];
    } finally {
      db.close();
    }
  };
  /** Accepted checkpoints, and those superseded since (whose objects were collected). */
  const accepted = (expertId: string) =>
    query<CheckpointRow>(
      "select * from checkpoints where expert_id = ? and status in ('accepted', 'superseded') order by step",
      expertId,
    );
  /**
   * What the store keeps of an expert's checkpoints: every one still accepted is there and hashes
   * right, every superseded one's object is gone, and at most two non-final ones are kept.
   */
  const expectStored = (rows: CheckpointRow[]) => {
    for (const row of rows) {
      const file = objectPath(row.key);
      if (row.status === 'superseded') {
        expect(existsSync(file), `${row.key} (superseded)`).toBe(false);
        continue;
      }
      expect(row.status).toBe('accepted');
      const bytes = new Uint8Array(readFileSync(file));
      expect(bytes.byteLength).toBe(row.bytes);
      expect(sha256(bytes)).toBe(row.sha256);
      expect(row.key).toContain(row.sha256);
    }
    expect(rows.filter((r) => r.status === 'accepted' && !r.final).length).toBeLessThanOrEqual(2);
  };
  const events = (expertId: string, type: string) =>
    query<{ data: string }>(
      'select data from events where expert_id = ? and type = ? order by id',
      expertId,
      type,
    ).map((e) => JSON.parse(e.data) as Record<string, unknown>);
  /** The local object store's root is <data-dir>/objects; it keeps bytes in its objects/ dir. */
  const objectPath = (key: string) => path.join(coord.dataDir, 'objects', 'objects', key);
  const exitOk = async (p: Proc) => {
    const { code } = await p.exit();
    expect(code, `${p.name} output:\n${p.output}`).toBe(0);
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-worker-'));
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'data'));
    await coord.start();
    token = (await coord.token('volunteers')).token;
    datasetId = await coord.importMnist(2);
  });

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await coord?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('exits non-zero with a clear message on a bad or revoked token, or a GPU it cannot use', async () => {
    const revoked = await coord.token('revoked');
    const del = await coord.api('DELETE', `/api/v1/tokens/${revoked.id}`);
    expect(del.status).toBe(200);
    const bad = startWorker('bad-token', {
      coordinator: coord.url,
      token: 'wt_not_a_real_token',
      workDir: path.join(dir, 'work-bad'),
    });
    const gone = startWorker('revoked-token', {
      coordinator: coord.url,
      token: revoked.token,
      workDir: path.join(dir, 'work-revoked'),
    });
    const gpu = startWorker('gpu', {
      coordinator: coord.url,
      token,
      workDir: path.join(dir, 'work-gpu'),
      extra: ['--gpu', '0', '--backend', 'tensorflow-gpu'],
    });
    procs.push(bad, gone, gpu);
    expect((await bad.exit(30_000)).code, bad.output).toBe(3);
    expect(bad.output).toMatch(/refused this worker: unknown worker token \(unauthorized\)/);
    expect((await gone.exit(30_000)).code, gone.output).toBe(3);
    expect(gone.output).toMatch(/token was revoked \(token_revoked\)/);
    expect((await gpu.exit(30_000)).code, gpu.output).toBe(2);
    expect(gpu.output).toMatch(/tfjs-node-gpu.*CUDA 11\.2 and cuDNN 8\.1/);
    expect(gpu.output).not.toMatch(/connected to/);
  });

  it('trains a DDPM and an FM expert to completion with two workers; checkpoints are in the store with the recorded hashes', async () => {
    const run = await newRun(40, { fmTimeSampling: 'logit-normal' });
    const ddpm = worker('ddpm-1', 'ddpm');
    const fm = worker('fm-1', 'fm');
    await Promise.all([exitOk(ddpm), exitOk(fm)]);

    const done = await validated(run.id);
    // Every expert validated: the coordinator moves on to the router (and may have published).
    expect(
      ['routing', 'published'],
      `${JSON.stringify(done, null, 1)}\n${ddpm.output}\n${fm.output}\n${coord.proc?.output}`,
    ).toContain(done.status);
    for (const objective of ['ddpm', 'fm'] as const) {
      const expert = expertOf(done, objective);
      expect(expert).toMatchObject({ status: 'done', step: 40, checkpointStep: 40 });
      const rows = accepted(expert.id);
      expect(rows.map((r) => r.step)).toEqual([10, 20, 30, 40]);
      expect(rows.map((r) => r.final)).toEqual([0, 0, 0, 1]);
      expectStored(rows);
      const last = loadCheckpoint(new Uint8Array(readFileSync(objectPath(rows.at(-1)!.key))));
      expect(last.meta).toMatchObject({ kind: 'expert', objective, step: 40 });
      // The run's FM time sampling reached the worker's trainer (recorded with the training).
      const training = JSON.parse(last.extraMetadata[TRAINING_METADATA_KEY]!);
      expect(training.objective).toMatchObject(
        objective === 'fm' ? { timeSampling: { kind: 'logit-normal' } } : { name: 'ddpm' },
      );
    }
    expect(ddpm.output).toMatch(/expert \d \(ddpm\) is done: 40 steps/);
    expect(fm.output).toMatch(/expert \d \(fm\) is done: 40 steps/);
    // The identity is kept in the work dir, per coordinator URL.
    const state = JSON.parse(readFileSync(path.join(dir, 'work-ddpm-1', 'state.json'), 'utf8'));
    expect(state.identities[coord.url].workerId).toMatch(/^wk_/);
    expect(state.lease).toBeNull();
  });

  it('after kill -9 the lease expires and another worker resumes from the last accepted checkpoint', async () => {
    const run = await newRun(60);
    const victim = worker('ddpm-victim', 'ddpm');
    const fm = worker('fm-2', 'fm');
    const ddpmId = expertOf(run, 'ddpm').id;
    await until('an accepted checkpoint of step 20', async () => {
      const e = expertOf(await coord.run(run.id), 'ddpm');
      return (e.checkpointStep ?? 0) >= 20 && e;
    });
    victim.kill('SIGKILL');
    await victim.exited;
    const resumeStep = expertOf(await coord.run(run.id), 'ddpm').checkpointStep!;
    expect(resumeStep).toBeLessThan(60);
    // No heartbeat: the coordinator expires the lease and the expert waits at its checkpoint.
    const pending = await until('the lease to expire', async () => {
      const e = expertOf(await coord.run(run.id), 'ddpm');
      return e.status === 'pending' && e;
    });
    expect(pending.step).toBe(resumeStep);
    expect(events(ddpmId, 'lease.expired').at(-1)).toMatchObject({ resumeStep });

    const heir = worker('ddpm-heir', 'ddpm');
    await Promise.all([exitOk(heir), exitOk(fm)]);
    expect(heir.output).toContain(
      `resuming expert ${pending.cluster} (ddpm) from step ${resumeStep}: the accepted checkpoint`,
    );
    const grants = events(ddpmId, 'lease.granted');
    expect(grants.map((g) => g.fromStep)).toEqual([0, resumeStep]);
    // The step count continued from the resume point: the heir's first checkpoint is the next
    // interval after it, and the expert finished at its target.
    const rows = accepted(ddpmId);
    const heirRows = rows.filter((r) => r.lease_id === grants[1]!.leaseId);
    expect(heirRows.map((r) => r.step)).toEqual(
      Array.from({ length: (60 - resumeStep) / 10 }, (_, i) => resumeStep + 10 * (i + 1)),
    );
    const final = await validated(run.id);
    expect(expertOf(final, 'ddpm')).toMatchObject({ status: 'done', step: 60, checkpointStep: 60 });
    expect(expertOf(final, 'fm')).toMatchObject({ status: 'done', checkpointStep: 60 });
    const last = loadCheckpoint(new Uint8Array(readFileSync(objectPath(rows.at(-1)!.key))));
    expect(last.meta.step).toBe(60);
  });

  it('workers keep training through a coordinator SIGKILL and restart, reconnect and finish; no accepted checkpoint is lost', async () => {
    const run = await newRun(60);
    const ddpm = worker('ddpm-3', 'ddpm');
    const fm = worker('fm-3', 'fm');
    await until('both experts to have an accepted checkpoint', async () => {
      const r = await coord.run(run.id);
      return r.experts.every((e) => (e.checkpointStep ?? 0) >= 10);
    });
    await coord.kill();
    const before = run.experts.flatMap((e) => accepted(e.id));
    expect(before.length).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 1000));
    await coord.start();
    await Promise.all([exitOk(ddpm), exitOk(fm)]);

    expect(ddpm.output).toMatch(/lost the connection to the coordinator/);
    expect(ddpm.output).toMatch(/reconnected to the coordinator/);
    const done = await validated(run.id);
    for (const e of done.experts)
      expect(e).toMatchObject({ status: 'done', step: 60, checkpointStep: 60 });
    const after = new Map(done.experts.flatMap((e) => accepted(e.id)).map((r) => [r.id, r]));
    for (const row of before) {
      // Still accepted with its bytes, or superseded by a newer one (and collected).
      expect(after.get(row.id), `checkpoint ${row.id} (step ${row.step})`).toMatchObject({
        sha256: row.sha256,
      });
      expect(['accepted', 'superseded']).toContain(after.get(row.id)!.status);
    }
    for (const e of done.experts) expectStored(accepted(e.id));
  });

  it('a restarted worker re-attaches to its lease from its work dir; SIGTERM checkpoints, releases and exits 0', async () => {
    // A lease TTL long enough for a worker process to restart within it.
    await coord.stop();
    await coord.start({ ARCHIPELAGO_HEARTBEAT_MS: '500', ARCHIPELAGO_LEASE_TTL_MS: '20000' });
    const run = await newRun(1000);
    const ddpmId = expertOf(run, 'ddpm').id;
    const first = worker('ddpm-restart', 'ddpm');
    await until('an accepted checkpoint', async () => {
      const e = expertOf(await coord.run(run.id), 'ddpm');
      return (e.checkpointStep ?? 0) >= 10 && e;
    });
    first.kill('SIGKILL');
    await first.exited;
    const killedAt = expertOf(await coord.run(run.id), 'ddpm').checkpointStep!;

    const second = worker('ddpm-restart', 'ddpm');
    await until('the restarted worker to train past the next checkpoint', async () => {
      const e = expertOf(await coord.run(run.id), 'ddpm');
      return (e.checkpointStep ?? 0) >= killedAt + 10 && e;
    });
    expect(second.output).toMatch(/re-attached to expert \d \(ddpm\)/);
    // It continues from the checkpoint in its work dir (the accepted one, or a newer one it was
    // uploading when it was killed).
    const local = Number(/from step (\d+): its local checkpoint/.exec(second.output)?.[1]);
    expect(local).toBeGreaterThanOrEqual(killedAt);
    // Same lease: no second grant.
    expect(events(ddpmId, 'lease.granted')).toHaveLength(1);

    second.kill('SIGTERM');
    await exitOk(second);
    // The stop checkpoints where it is, or says its checkpoint there is saved already (a signal
    // that lands just after a checkpoint).
    const stoppedAt = Number(
      /(?:saving a checkpoint of step|its checkpoint of step) (\d+)/.exec(second.output)?.[1],
    );
    expect(second.output).toMatch(/released the lease/);
    // Released, not expired: the expert is back in the pool at once, at the stop's checkpoint.
    const expert = expertOf(await coord.run(run.id), 'ddpm');
    expect(expert).toMatchObject({ status: 'pending', checkpointStep: stoppedAt, step: stoppedAt });
    expect(events(ddpmId, 'lease.released').at(-1)).toMatchObject({ resumeStep: stoppedAt });
    const state = JSON.parse(
      readFileSync(path.join(dir, 'work-ddpm-restart', 'state.json'), 'utf8'),
    );
    expect(state.lease).toBeNull();

    // A second signal does not wait: exit 1 at once.
    const impatient = worker('ddpm-impatient', 'ddpm');
    await until('training to start', async () =>
      /starting expert|resuming expert/.test(impatient.output),
    );
    // The coordinator is paused, so the graceful stop (checkpoint, upload, release) cannot finish
    // before the second signal arrives: it waits on the coordinator's answer, not on timing.
    coord.proc!.kill('SIGSTOP');
    try {
      impatient.kill('SIGINT');
      await until('the first signal to be seen', async () =>
        /received SIGINT/.test(impatient.output),
      );
      impatient.kill('SIGINT');
      expect((await impatient.exit(30_000)).code, impatient.output).toBe(1);
    } finally {
      coord.proc!.kill('SIGCONT');
    }
    expect(impatient.output).toMatch(/received SIGINT again: exiting now/);
  });
});
