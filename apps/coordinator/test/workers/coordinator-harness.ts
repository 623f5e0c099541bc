/**
 * A real coordinator on a loopback port with a worker token, and the helpers a test that talks
 * the worker protocol over real sockets needs: REST calls, a run over a fresh image folder,
 * hello'd connections and checkpoint uploads through the presigned URL.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { saveCheckpoint } from '@archipelago/models';
import type { CheckpointUrl, Dataset, LeaseGrant, Run, Welcome } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import { expect } from 'vitest';
import { type ConfigInput, loadConfig } from '../../src/config.js';
import { runs as runRows } from '../../src/db/schema/index.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { runCheckpointShape } from '../../src/services/checkpoint-objects.js';
import { ADMIN_KEY, makeImageFolder } from '../helpers.js';
import { hello, TestClient } from './socket-client.js';

export const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export interface Harness {
  base: string;
  token: string;
  tokenId: string;
  server: RunningServer;
  api(
    method: string,
    route: string,
    body?: unknown,
  ): Promise<{ status: number; body: Record<string, unknown> }>;
  makeRun(k: number, objectives: string, steps?: number, interval?: number): Promise<Run>;
  connect(
    objective: 'ddpm' | 'fm' | 'any',
    extra?: Record<string, unknown>,
  ): Promise<{ c: TestClient; welcome: Welcome }>;
  upload(
    c: TestClient,
    leaseId: string,
    step: number,
    bytes: Uint8Array,
    final?: boolean,
    announced?: string,
  ): Promise<{ url: CheckpointUrl; put: Response }>;
  /**
   * A checkpoint of the grant's expert at `step` as a worker's trainer would write it (the run's
   * architecture, every parameter `fill`; NaN poisons one value), without training: the right
   * size and header. The default, 0, is the zero-output network: its held-out loss is exactly an
   * untrained network's, so it passes the resume-point check whatever noise the check draws
   * (other fills can land either side of the check's bound on a fresh draw).
   */
  checkpoint(grant: LeaseGrant, step: number, fill?: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

export async function startHarness(
  /** Timing and any other settings (limits, caps) the coordinator starts with. */
  timing: { heartbeatMs: number; leaseTtlMs: number } & ConfigInput = {
    heartbeatMs: 1000,
    leaseTtlMs: 10_000,
  },
  /** Environment variables of the coordinator's config (an S3 store, say). */
  env: Record<string, string> = {},
): Promise<Harness> {
  const dir = await mkdtemp(path.join(tmpdir(), 'arch-harness-'));
  const server = await startServer(
    loadConfig(
      {
        dataDir: path.join(dir, 'data'),
        port: 0,
        logLevel: 'silent',
        adminKey: ADMIN_KEY,
        ...timing,
      },
      env,
    ),
    { handleSignals: false },
  );
  const base = server.url;
  const api: Harness['api'] = async (method, route, body) => {
    const res = await fetch(`${base}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${ADMIN_KEY}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const t = await api('POST', '/api/v1/tokens', { name: 'volunteers' });
  expect(t.status).toBe(201);
  const token = t.body.token as string;
  const tokenId = t.body.id as string;
  let runs = 0;
  const makeRun: Harness['makeRun'] = async (k, objectives, steps = 10, interval = 5) => {
    const folder = await makeImageFolder(path.join(dir, `imgs-${runs++}`), 2, Math.max(2, k));
    const imp = await api('POST', '/api/v1/datasets', {
      name: 'x',
      source: { kind: 'folder', path: folder },
      resolution: 8,
      cluster: { k },
    });
    let job = imp.body.job as { id: string; status: string; result: { datasetId: string } };
    while (job.status !== 'succeeded') {
      if (job.status === 'failed') throw new Error(JSON.stringify(job));
      await new Promise((r) => setTimeout(r, 50));
      job = (await api('GET', `/api/v1/jobs/${job.id}`)).body as typeof job;
    }
    const ds = (await api('GET', `/api/v1/datasets/${job.result.datasetId}`))
      .body as unknown as Dataset;
    const run = await api('POST', '/api/v1/runs', {
      datasetId: ds.id,
      experts: k,
      objectives,
      stepsPerExpert: steps,
      checkpointInterval: interval,
    });
    expect(run.status).toBe(201);
    return run.body as unknown as Run;
  };
  const connect: Harness['connect'] = async (objective, extra = {}) => {
    const c = await TestClient.connect(base);
    const welcome = (await c.request(hello(token, objective, extra))) as Welcome;
    expect(welcome.type).toBe('welcome');
    return { c, welcome };
  };
  const upload: Harness['upload'] = async (
    c,
    leaseId,
    step,
    bytes,
    final = false,
    announced = sha(bytes),
  ) => {
    const url = (await c.request({
      type: 'checkpoint.begin',
      leaseId,
      step,
      bytes: bytes.length,
      sha256: announced,
      final,
    })) as CheckpointUrl;
    expect(url.type, JSON.stringify(url)).toBe('checkpoint.url');
    const put = await fetch(url.putUrl, { method: 'PUT', headers: url.headers, body: bytes });
    return { url, put };
  };
  const checkpoint: Harness['checkpoint'] = async (grant, step, fill = 0) => {
    const run = server.coordinator.db
      .select()
      .from(runRows)
      .where(eq(runRows.id, grant.expert.runId))
      .get()!;
    const { architecture, paramShapes } = runCheckpointShape(run);
    const nan = Number.isNaN(fill);
    const params = Object.fromEntries(
      Object.entries(paramShapes).map(([name, shape]) => [
        name,
        { shape, data: new Float32Array(shape.reduce((n, d) => n * d, 1)).fill(nan ? 0 : fill) },
      ]),
    );
    const bytes = await saveCheckpoint({
      params,
      meta: {
        kind: 'expert',
        architecture,
        objective: grant.objective as 'ddpm' | 'fm',
        spec: grant.spec as unknown as Record<string, unknown>,
        step,
        dataFingerprint: grant.shard.train.sha256,
      },
    });
    if (nan) {
      // saveCheckpoint refuses NaN: poison the file by hand, as an attacker would (the first
      // element of the data region).
      const view = new DataView(bytes.buffer, bytes.byteOffset);
      view.setFloat32(8 + Number(view.getBigUint64(0, true)), Number.NaN, true);
    }
    return bytes;
  };
  return {
    base,
    token,
    tokenId,
    server,
    api,
    makeRun,
    connect,
    upload,
    checkpoint,
    async close() {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
