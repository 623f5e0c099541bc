/**
 * Real processes for the end-to-end tests: a coordinator (`apps/coordinator/dist/bin.js serve`)
 * on a fixed loopback port (so a restart reuses it) and worker processes (`dist/bin.js`), with
 * their output captured, plus the admin REST calls the tests need.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import type { Run } from '@archipelago/protocol';
import S3rver from 's3rver';

/**
 * The acceptance bar of these tests' runs: they train experts for a few dozen steps, far short of
 * what the default bar asks (docs/method.md §12, a trained expert beats its shard's linear
 * reference), so they accept any finite network. The bar itself is tested in the coordinator's
 * validation tests.
 */
export const FEW_STEPS_ACCEPTANCE = { maxMidRatio: 1e6, maxHighRatio: 1e6, minSpecificity: 0 };
export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';
export const WORKER_BIN = path.resolve(import.meta.dirname, '../dist/bin.js');
export const COORDINATOR_BIN = path.resolve(import.meta.dirname, '../../coordinator/dist/bin.js');

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Poll `fn` until it returns a truthy value. */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs = 60_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * An s3rver on a free loopback port with one bucket, and the coordinator settings that point at
 * it (`endpoint` replaces its URL, a fault proxy in front of it, say).
 */
export async function startS3(
  directory: string,
  bucket = 'arch',
): Promise<{
  s3: S3rver;
  port: number;
  env(endpoint?: string): Record<string, string>;
}> {
  const s3 = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await s3.run();
  return {
    s3,
    port,
    env: (endpoint = `http://127.0.0.1:${port}`) => ({
      ARCHIPELAGO_S3_BUCKET: bucket,
      ARCHIPELAGO_S3_ENDPOINT: endpoint,
      ARCHIPELAGO_S3_REGION: 'us-east-1',
      ARCHIPELAGO_S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    }),
  };
}

export class Proc {
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const collect = (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
      if (process.env.WORKER_TEST_VERBOSE) process.stderr.write(`[${name}] ${chunk}`);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.child.kill(signal);
  }

  /** The exit, or a rejection naming the process and its output when it takes too long. */
  async exit(timeoutMs = 90_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.name} did not exit in time; output:\n${this.output}`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

export class CoordinatorProcess {
  proc: Proc | null = null;
  readonly url: string;

  constructor(
    readonly port: number,
    readonly dataDir: string,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  async start(env: Record<string, string> = {}): Promise<void> {
    const child = spawn(
      process.execPath,
      [COORDINATOR_BIN, 'serve', '--port', String(this.port), '--data-dir', this.dataDir],
      {
        env: {
          ...process.env,
          ARCHIPELAGO_ADMIN_KEY: ADMIN_KEY,
          ARCHIPELAGO_LOG_LEVEL: 'warn',
          ARCHIPELAGO_HEARTBEAT_MS: '300',
          ARCHIPELAGO_LEASE_TTL_MS: '3000',
          ARCHIPELAGO_HOST: '127.0.0.1',
          // These tests train for a few dozen steps: the router is trained briefly too.
          ARCHIPELAGO_ROUTER_STEPS: '20',
          // Nor do they score what they publish (remote-jobs.test.ts does, on 10 samples).
          ARCHIPELAGO_SCORE_SAMPLES: '0',
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.proc = new Proc('coordinator', child);
    await until(
      'the coordinator to answer',
      async () => {
        if (!this.proc?.running) throw new Error(`coordinator exited:\n${this.proc?.output}`);
        return (await fetch(`${this.url}/readyz`)).ok;
      },
      30_000,
      100,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}\n${this.proc?.output}`);
    });
  }

  async kill(): Promise<void> {
    if (!this.proc) return;
    this.proc.kill('SIGKILL');
    await this.proc.exited;
  }

  async stop(): Promise<void> {
    if (!this.proc?.running) return;
    this.proc.kill('SIGTERM');
    await this.proc.exit(15_000).catch(() => this.kill());
  }

  async api<T = Record<string, unknown>>(
    method: string,
    route: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }> {
    const res = await fetch(`${this.url}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${ADMIN_KEY}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
  }

  async token(name: string): Promise<{ id: string; token: string }> {
    const t = await this.api<{ id: string; token: string }>('POST', '/api/v1/tokens', { name });
    if (t.status !== 201) throw new Error(`token: ${JSON.stringify(t)}`);
    return t.body;
  }

  /** Import the built-in MNIST at 8x8, clustered into `k` shards; returns the dataset id. */
  /** Wait for an import job to succeed (thrown when it fails); the job row. */
  importDone(jobId: string): Promise<{ status: string; result?: { datasetId: string } }> {
    return until(
      'the import job',
      async () => {
        const j = await this.api<{ status: string; result?: { datasetId: string } }>(
          'GET',
          `/api/v1/jobs/${jobId}`,
        );
        if (j.body.status === 'failed') throw new Error(`import failed: ${JSON.stringify(j.body)}`);
        return j.body.status === 'succeeded' ? j.body : null;
      },
      120_000,
      200,
    );
  }

  async importMnist(k: number): Promise<string> {
    const imp = await this.api<{ job: { id: string } }>('POST', '/api/v1/datasets', {
      name: 'mnist-8',
      source: { kind: 'builtin', name: 'mnist' },
      resolution: 8,
      cluster: { k },
    });
    if (imp.status !== 202 && imp.status !== 201) throw new Error(`import: ${JSON.stringify(imp)}`);
    const job = await this.importDone(imp.body.job.id);
    return job.result!.datasetId;
  }

  /** A run; unless `body` says otherwise, with {@link FEW_STEPS_ACCEPTANCE}. */
  async createRun(body: Record<string, unknown>): Promise<Run> {
    const run = await this.api<Run>('POST', '/api/v1/runs', {
      acceptance: FEW_STEPS_ACCEPTANCE,
      ...body,
    });
    if (run.status !== 201) throw new Error(`run: ${JSON.stringify(run)}`);
    return run.body;
  }

  async run(id: string): Promise<Run> {
    return (await this.api<Run>('GET', `/api/v1/runs/${id}`)).body;
  }

  /** The run once every expert is done and it is published (a failed run throws). */
  published(id: string, timeoutMs = 120_000): Promise<Run> {
    return until(
      'the expert validated and the run published',
      async () => {
        const r = await this.run(id);
        if (r.status === 'failed') throw new Error(`run failed: ${r.error}`);
        return r.experts.every((e) => e.status === 'done') && r.status === 'published' ? r : null;
      },
      timeoutMs,
      200,
    );
  }
}

export interface WorkerArgs {
  coordinator: string;
  token: string;
  objective?: 'ddpm' | 'fm' | 'any';
  workDir: string;
  name?: string;
  exitWhenIdle?: boolean;
  extra?: string[];
  /** The worker's environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

export function startWorker(label: string, a: WorkerArgs): Proc {
  const args = [
    WORKER_BIN,
    '--coordinator',
    a.coordinator,
    '--token',
    a.token,
    '--objective',
    a.objective ?? 'any',
    '--work-dir',
    a.workDir,
    '--backend',
    'wasm',
    '--name',
    a.name ?? label,
    ...(a.exitWhenIdle === false ? [] : ['--exit-when-idle']),
    ...(a.extra ?? []),
  ];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(a.env ? { env: a.env } : {}),
  });
  return new Proc(label, child);
}
