/**
 * Real processes for the browser test: a coordinator (`apps/coordinator/dist/bin.js serve`)
 * and a worker (`apps/worker/dist/bin.js`), with their output captured, plus Chromium.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { type Browser, chromium } from 'playwright-core';

export const ADMIN_KEY = 'e2e-admin-key-0123456789abcdef';
export const CHROMIUM = '/usr/bin/chromium';
const COORDINATOR_BIN = path.resolve(import.meta.dirname, '../../coordinator/dist/bin.js');
const WORKER_BIN = path.resolve(import.meta.dirname, '../../worker/dist/bin.js');
const DASHBOARD_INDEX = path.resolve(import.meta.dirname, '../dist/index.html');

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Everything the test needs is there, or an error that says how to get it. */
export function checkPrerequisites(): void {
  try {
    accessSync(CHROMIUM, constants.X_OK);
  } catch {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM}: the dashboard test drives a real browser. Install it with \`apt-get install -y chromium\` (.ci/run does).`,
    );
  }
  for (const [file, what] of [
    [COORDINATOR_BIN, 'the coordinator'],
    [WORKER_BIN, 'the worker'],
    [DASHBOARD_INDEX, 'the dashboard'],
  ] as const) {
    if (!existsSync(file))
      throw new Error(`${what} is not built (${file} is missing): run \`npm run build\` first`);
  }
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

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

/** An error `until` does not retry. */
export class Fatal extends Error {}

/** Poll `fn` until it returns a truthy value. */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs = 60_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) {
      if (err instanceof Fatal) throw err;
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

export class Proc {
  output = '';
  readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const collect = (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
      if (process.env.DASHBOARD_TEST_VERBOSE) process.stderr.write(`[${name}] ${chunk}`);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exited = new Promise((resolve) => child.on('exit', () => resolve()));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

export class Coordinator {
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
          ARCHIPELAGO_HOST: '127.0.0.1',
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.proc = new Proc('coordinator', child);
    await until(
      'the coordinator to answer',
      async () => {
        if (!this.proc?.running) throw new Fatal(`coordinator exited:\n${this.proc?.output}`);
        return (await fetch(`${this.url}/readyz`)).ok;
      },
      30_000,
      100,
    );
  }

  async api<T = Record<string, unknown>>(
    method: string,
    route: string,
    body?: unknown,
  ): Promise<T> {
    const res = await fetch(`${this.url}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${ADMIN_KEY}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
    return (text ? JSON.parse(text) : {}) as T;
  }

  /** Import the built-in MNIST at 8x8, clustered into `k` shards; returns the dataset id. */
  async importMnist(k: number): Promise<string> {
    const imp = await this.api<{ job: { id: string } }>('POST', '/api/v1/datasets', {
      name: 'mnist-8',
      source: { kind: 'builtin', name: 'mnist' },
      resolution: 8,
      cluster: { k },
    });
    const job = await until(
      'the import job',
      async () => {
        const j = await this.api<{
          status: string;
          error?: string;
          result?: { datasetId: string };
        }>('GET', `/api/v1/jobs/${imp.job.id}`);
        if (j.status === 'failed') throw new Fatal(`import failed: ${j.error}`);
        return j.status === 'succeeded' ? j : null;
      },
      120_000,
    );
    return job.result!.datasetId;
  }
}

export function startWorker(coordinatorUrl: string, token: string, workDir: string): Proc {
  const child = spawn(
    process.execPath,
    [
      WORKER_BIN,
      '--coordinator',
      coordinatorUrl,
      '--token',
      token,
      '--objective',
      'any',
      '--work-dir',
      workDir,
      '--backend',
      'wasm',
      '--name',
      'e2e-volunteer',
      '--exit-when-idle',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new Proc('worker', child);
}
