/**
 * The volunteer's controls on real processes: a coordinator (`serve`, lease TTL 3 s, paused-lease
 * grace 12 s) and worker processes on the WebAssembly backend training tiny DiT experts on 8x8
 * MNIST, paused and resumed by signal (SIGUSR1/SIGUSR2) and by the local command (`worker pause|
 * resume|finish|status`), with a memory ceiling and a thread cap. What is checked is state (the
 * coordinator's rows and API, the worker's log lines and exit code), never timing.
 *
 * One coordinator serves the file and leases oldest-run-first: each test finishes or cancels the
 * run it creates.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Run } from '@archipelago/protocol';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { controlSocketPath } from '../src/control-socket.js';
import {
  CoordinatorProcess,
  freePort,
  type Proc,
  startWorker,
  until,
  WORKER_BIN,
} from './harness.js';

const TTL_MS = 3000;
const GRACE_MS = 12_000;

interface LeaseRow {
  id: string;
  expert_id: string;
  status: string;
  paused_at: number | null;
}

interface WorkerRow {
  name: string;
  hardware: { threads?: number } | null;
  lease: { id: string; expertId: string; pausedSince: string | null } | null;
}

/** Run `worker <args>` (a control command) to its end. */
function control(
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [WORKER_BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** One raw request line to a control socket; the reply line. */
function rawControl(socketPath: string, line: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let reply = '';
    const socket = createConnection(socketPath, () => socket.write(line));
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      reply += c;
    });
    socket.on('error', reject);
    socket.on('end', () => resolve(JSON.parse(reply) as Record<string, unknown>));
  });
}

describe('volunteer controls on real processes', () => {
  let dir: string;
  let coord: CoordinatorProcess;
  let token: string;
  let datasetId: string;
  const procs: Proc[] = [];
  /** Runs created by the test under way: cancelled after it, so none is leased by the next. */
  const runs: string[] = [];

  const worker = (label: string, extra: string[] = [], exitWhenIdle = true) => {
    const p = startWorker(label, {
      coordinator: coord.url,
      token,
      objective: 'fm',
      workDir: path.join(dir, `work-${label}`),
      exitWhenIdle,
      extra,
    });
    procs.push(p);
    return p;
  };
  const newRun = async (steps: number): Promise<Run> => {
    const run = await coord.createRun({
      datasetId,
      experts: 1,
      objectives: 'fm:1',
      stepsPerExpert: steps,
      checkpointInterval: 10,
      batchSize: 8,
      model: 'tiny',
    });
    runs.push(run.id);
    return run;
  };
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
  const leasesOf = (expertId: string) =>
    query<LeaseRow>('select * from leases where expert_id = ? order by granted_at', expertId);
  const workerRow = async (name: string) =>
    (await coord.api<{ workers: WorkerRow[] }>('GET', '/api/v1/workers')).body.workers.find(
      (w) => w.name === name,
    );
  const training = (runId: string) =>
    until(
      'the expert to train',
      async () => {
        const e = (await coord.run(runId)).experts[0]!;
        return e.status === 'training' && e.step >= 1 ? e : null;
      },
      120_000,
    );
  const done = (runId: string) =>
    until(
      'the run to be published',
      async () => {
        const r = await coord.run(runId);
        if (r.status === 'failed') throw new Error(`run failed: ${r.error}`);
        return r.status === 'published' ? r : null;
      },
      120_000,
    );

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-controls-'));
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'data'));
    await coord.start({
      ARCHIPELAGO_LEASE_TTL_MS: String(TTL_MS),
      ARCHIPELAGO_PAUSED_LEASE_GRACE_MS: String(GRACE_MS),
    });
    token = (await coord.token('controls')).token;
    datasetId = await coord.importMnist(1);
  });

  afterEach(async () => {
    for (const p of procs) p.kill('SIGKILL');
    procs.length = 0;
    // A published run refuses the cancel; one a failed test left unfinished is cancelled.
    for (const id of runs.splice(0)) await coord.api('POST', `/api/v1/runs/${id}/cancel`);
  });

  afterAll(async () => {
    await coord?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('SIGUSR1 pauses between steps and keeps the lease past the TTL, even silent; SIGUSR2 resumes and it finishes the expert', async () => {
    const run = await newRun(40);
    const w = worker('sig');
    await training(run.id);
    w.kill('SIGUSR1');
    const pausedAt = await until('the pause', async () =>
      /paused at step (\d+) of expert/.exec(w.output),
    );
    const step = Number(pausedAt[1]);
    const row = await until('the dashboard to show the pause', async () => {
      const r = await workerRow('sig');
      return r?.lease?.pausedSince ? r : null;
    });
    const leaseId = row.lease!.id;
    await until(
      'the coordinator to have the paused step',
      async () => (await coord.run(run.id)).experts[0]!.step === step,
    );

    // Silent (stopped) for more than the lease TTL: a paused lease outlives it.
    w.kill('SIGSTOP');
    const silentUntil = Date.parse(row.lease!.pausedSince!) + 2 * TTL_MS;
    await until('twice the TTL to pass', async () => Date.now() > silentUntil, 30_000, 50);
    expect(leasesOf(run.experts[0]!.id).map((l) => l.status)).toEqual(['active']);
    const continuedAt = Date.now();
    w.kill('SIGCONT');
    // Still paused: heartbeats flow again, and no step is trained.
    const after = await until('a heartbeat after the stop', async () => {
      const e = (await coord.run(run.id)).experts[0]!;
      return Date.parse(e.lastHeartbeatAt ?? '') > continuedAt ? e : null;
    });
    expect(after.step).toBe(step);
    expect((await workerRow('sig'))?.lease).toMatchObject({
      id: leaseId,
      pausedSince: row.lease!.pausedSince,
    });
    expect(w.output).not.toMatch(/lost the lease/);

    w.kill('SIGUSR2');
    const { code } = await w.exit(120_000);
    expect(code, w.output).toBe(0);
    expect(w.output).toMatch(new RegExp(`resumed at step ${step} of expert`));
    await done(run.id);
    // One lease from grant to completion.
    const leases = leasesOf(run.experts[0]!.id);
    expect(leases.map((l) => [l.id, l.status])).toEqual([[leaseId, 'completed']]);
    expect(leases[0]!.paused_at).toBeNull();
  });

  it('a lease paused past the grace expires; the worker, still paused, drops it and asks for no other until resumed', async () => {
    const run = await newRun(30);
    const w = worker('grace');
    const workDir = path.join(dir, 'work-grace');
    await training(run.id);
    const paused = await control('pause', '--work-dir', workDir);
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stdout).toMatch(/^worker grace \(pid \d+\): paused since /);
    const expertId = run.experts[0]!.id;
    await until(
      'the paused lease to expire after the grace',
      async () => leasesOf(expertId)[0]?.status === 'expired',
      GRACE_MS + 30_000,
    );
    await until('the worker, still paused, to drop it', async () => {
      const reply = await rawControl(controlSocketPath(workDir), '{"command":"status"}\n');
      const status = reply.status as { state: string; lease: unknown };
      return status.state === 'paused' && status.lease === null;
    });
    expect(w.output).toMatch(/lost the lease of expert/);
    // Paused with no lease: it asks for none (the expert stays pending).
    expect(leasesOf(expertId)).toHaveLength(1);
    expect((await coord.run(run.id)).experts[0]!.status).toBe('pending');

    expect((await control('resume', '--work-dir', workDir)).code).toBe(0);
    const { code } = await w.exit(120_000);
    expect(code, w.output).toBe(0);
    await done(run.id);
    expect(leasesOf(expertId).map((l) => l.status)).toEqual(['expired', 'completed']);
  });

  it('worker pause, status, resume and finish over the local socket: finish uploads the next checkpoint, releases the lease and exits 0', async () => {
    const run = await newRun(400);
    // Without --exit-when-idle: finish is what makes it exit.
    const w = worker('cmd', [], false);
    const workDir = path.join(dir, 'work-cmd');
    await training(run.id);

    const paused = await control('pause', '--work-dir', workDir);
    expect(paused.code, paused.stderr).toBe(0);
    await until('the pause', async () => /paused at step \d+ of expert/.test(w.output));
    const status = JSON.parse((await control('status', '--work-dir', workDir, '--json')).stdout);
    expect(status).toMatchObject({
      ok: true,
      status: { state: 'paused', lease: { runId: run.id, targetSteps: 400 }, connected: true },
    });
    expect(Date.parse(status.status.pausedSince)).toBeGreaterThan(0);
    await until('the dashboard to show the pause', async () =>
      Boolean((await workerRow('cmd'))?.lease?.pausedSince),
    );

    const resumed = await control('resume', '--work-dir', workDir, '--json');
    expect(JSON.parse(resumed.stdout)).toMatchObject({ ok: true, status: { state: 'training' } });
    await until('the resume', async () => /resumed at step \d+ of expert/.test(w.output));
    await until('the dashboard to show it training', async () => {
      const r = await workerRow('cmd');
      return r?.lease !== null && r?.lease?.pausedSince === null;
    });

    // Hostile or mistaken input on the socket gets a stable code, and the worker trains on.
    const socket = controlSocketPath(workDir);
    await expect(rawControl(socket, 'nonsense\n')).resolves.toMatchObject({
      ok: false,
      code: 'bad_request',
    });
    await expect(rawControl(socket, '{"command":"shutdown"}\n')).resolves.toMatchObject({
      ok: false,
      code: 'unknown_command',
      error: 'unknown command "shutdown"; valid: pause, resume, finish, status',
    });
    await expect(rawControl(socket, `{"command":"${'x'.repeat(2000)}`)).resolves.toMatchObject({
      ok: false,
      code: 'too_large',
    });

    const finishing = await control('finish', '--work-dir', workDir, '--json', '--wait');
    // --wait returned once the worker had exited.
    expect(w.running).toBe(false);
    expect(JSON.parse(finishing.stdout)).toMatchObject({
      ok: true,
      status: { state: 'finishing' },
    });
    const named = await until('the finish', async () =>
      /finishing: training on to step (\d+) \(the next checkpoint\)/.exec(w.output),
    );
    const target = Number(named[1]);
    expect(target % 10).toBe(0);
    const { code } = await w.exit(120_000);
    expect(code, w.output).toBe(0);
    expect(w.output).toMatch(/released the lease of expert/);
    expect(w.output).toMatch(/finished \(stopped\); exiting/);
    // The checkpoint of that step was accepted and the lease released: the expert waits for the
    // next volunteer, resuming from there.
    const expert = (await coord.run(run.id)).experts[0]!;
    expect(expert).toMatchObject({ status: 'pending', checkpointStep: target });
    expect(leasesOf(expert.id).map((l) => l.status)).toEqual(['released']);

    // No worker there any more: the command says so.
    const gone = await control('status', '--work-dir', workDir);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/no worker is running with work dir/);
  });

  it('--max-memory-mb below what it uses exits 4 after releasing its lease; --max-threads caps --threads', async () => {
    const run = await newRun(400);
    const w = worker('mem', ['--threads', '2', '--max-threads', '1', '--max-memory-mb', '1']);
    const { code } = await w.exit(120_000);
    expect(code, w.output).toBe(4);
    expect(w.output).toMatch(/--threads 2 is capped to 1 by --max-threads 1/);
    expect(w.output).toMatch(/1 thread\(s\) \(at most 1 compute threads\), at most 1 MiB/);
    expect(w.output).toMatch(/memory: the worker uses \d+ MiB, above --max-memory-mb 1; stopping/);
    expect(w.output).toMatch(/released the lease of expert/);
    expect((await workerRow('mem'))?.hardware?.threads).toBe(1);
    const expert = (await coord.run(run.id)).experts[0]!;
    expect(expert.status).toBe('pending');
    expect(leasesOf(expert.id).map((l) => l.status)).toEqual(['released']);
  });
});
