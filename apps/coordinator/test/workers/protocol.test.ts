import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { LeaseGrant, Run } from '@archipelago/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/database.js';
import type { RunningServer } from '../../src/server.js';
import { revokeToken } from '../../src/services/tokens.js';
import { type Harness, sha, startHarness } from './coordinator-harness.js';
import { hello, TestClient } from './socket-client.js';

const BIN = path.resolve(import.meta.dirname, '../../dist/bin.js');
const execFileAsync = promisify(execFile);

describe('worker protocol over real sockets', () => {
  let h: Harness;
  let server: RunningServer;
  let base: string;
  let token: string;
  let tokenId: string;
  const api = (method: string, route: string, body?: unknown) => h.api(method, route, body);
  const makeRun = (k: number, objectives: string, steps = 10, interval = 5): Promise<Run> =>
    h.makeRun(k, objectives, steps, interval);
  const connect = (objective: 'ddpm' | 'fm' | 'any', extra: Record<string, unknown> = {}) =>
    h.connect(objective, extra);
  const upload = (
    c: TestClient,
    leaseId: string,
    step: number,
    bytes: Uint8Array,
    final = false,
    announced = sha(bytes),
  ) => h.upload(c, leaseId, step, bytes, final, announced);

  // A fresh coordinator per test: leases expire within a test (TTL 400 ms), and leasing is
  // oldest-run-first, so runs left by one test would be granted in the next.
  const start = async (timing: Parameters<typeof startHarness>[0]) => {
    h = await startHarness(timing);
    ({ server, base, token, tokenId } = h);
  };
  beforeEach(async () => {
    // Generous timing so a loaded CI machine never expires a lease by accident.
    await start({ heartbeatMs: 1000, leaseTtlMs: 10_000 });
  });
  afterEach(async () => {
    await h.close();
  });

  it('refuses a bad token, and frames before hello, with an error frame and a close', async () => {
    const bad = await TestClient.connect(base);
    const err = await bad.request(hello('wt_not_a_real_token', 'ddpm'));
    expect(err).toMatchObject({ type: 'error', code: 'unauthorized', fatal: true });
    expect((await bad.closedWith).code).toBe(4001);
    const early = await TestClient.connect(base);
    expect(await early.request({ type: 'lease.request' })).toMatchObject({
      type: 'error',
      code: 'out_of_order',
      fatal: true,
    });
    expect((await early.closedWith).code).toBe(1008);
    const old = await TestClient.connect(base);
    expect(await old.request(hello(token, 'ddpm', { protocols: [7] }))).toMatchObject({
      code: 'unsupported_protocol',
    });
  });

  it('answers malformed, unknown, invalid and oversized frames with error frames, never crashing', async () => {
    const { c } = await connect('ddpm');
    expect(await c.request('{"type":')).toMatchObject({
      type: 'error',
      code: 'bad_json',
      fatal: false,
    });
    expect(await c.request({ type: 'lease.steal' })).toMatchObject({
      code: 'unknown_type',
      fatal: false,
    });
    expect(
      await c.request({
        type: 'heartbeat',
        leaseId: 'ls_000000000000',
        step: -5,
        loss: 0,
        imagesPerSec: 0,
      }),
    ).toMatchObject({
      code: 'invalid_message',
      inReplyTo: 'heartbeat',
    });
    expect(
      await c.request({
        type: 'heartbeat',
        leaseId: 'ls_000000000000',
        step: 5,
        loss: 0,
        imagesPerSec: 0,
      }),
    ).toMatchObject({ code: 'unknown_lease' });
    // Still usable after all that.
    expect((await c.request({ type: 'lease.request' })).type).toMatch(/^lease\./);
    c.send({ type: 'lease.release', leaseId: 'ls_000000000000', reason: 'x' });
    expect(await c.next()).toMatchObject({ code: 'unknown_lease' });
    c.send(JSON.stringify({ type: 'heartbeat', pad: 'x'.repeat(200_000) }));
    expect(await c.next()).toMatchObject({ code: 'frame_too_large', fatal: true });
    expect((await c.closedWith).code).toBe(1009);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it('leases by objective, renews by heartbeat, and takes checkpoints through presigned URLs', async () => {
    const run = await makeRun(2, 'ddpm:1,fm:1', 10, 5);
    const { c: ddpm } = await connect('ddpm');
    const grant = (await ddpm.request({ type: 'lease.request' })) as LeaseGrant;
    expect(grant).toMatchObject({
      type: 'lease.grant',
      objective: 'ddpm',
      schedule: 'cosine',
      expert: { runId: run.id, cluster: 0 },
    });
    expect(grant.training).toMatchObject({ targetSteps: 10, checkpointInterval: 5 });
    expect(grant.resumeFrom).toBeUndefined();
    const shard = new Uint8Array(await (await fetch(grant.shard.train.url)).arrayBuffer());
    expect(sha(shard)).toBe(grant.shard.train.sha256);
    // The only other expert is FM: a second DDPM worker gets nothing.
    const { c: ddpm2 } = await connect('ddpm');
    expect(await ddpm2.request({ type: 'lease.request' })).toMatchObject({ type: 'lease.none' });
    const { c: fm } = await connect('fm');
    const fmGrant = (await fm.request({ type: 'lease.request' })) as LeaseGrant;
    expect(fmGrant).toMatchObject({ objective: 'fm', expert: { cluster: 1 } });
    expect(fmGrant.schedule).toBeUndefined();
    // The run's FM training times (default logit-normal, docs/results.md §1) go to FM experts only.
    expect(fmGrant.timeSampling).toBe('logit-normal');
    expect(grant.timeSampling).toBeUndefined();

    const ack = await ddpm.request({
      type: 'heartbeat',
      leaseId: grant.leaseId,
      step: 3,
      loss: 0.5,
      imagesPerSec: 12,
    });
    expect(ack).toMatchObject({ type: 'heartbeat.ack', leaseId: grant.leaseId });
    const shown = (await api('GET', `/api/v1/runs/${run.id}`)).body as unknown as Run;
    expect(shown.experts[0]).toMatchObject({
      status: 'training',
      step: 3,
      loss: 0.5,
      imagesPerSec: 12,
    });
    expect(shown.experts[0]!.workerId).toMatch(/^wk_/);

    // A checkpoint: wrong hash rejected and deleted; then a good one accepted.
    const body = await h.checkpoint(grant, 5);
    const lying = await upload(ddpm, grant.leaseId, 5, body, false, sha(body.map((v) => v ^ 1)));
    expect(lying.put.status).toBe(400); // the local store checks the announced hash on upload
    const rejected = await ddpm.request({
      type: 'checkpoint.commit',
      leaseId: grant.leaseId,
      checkpointId: lying.url.checkpointId,
    });
    expect(rejected).toMatchObject({ type: 'checkpoint.rejected' });
    expect((rejected as { reason: string }).reason).toMatch(/no object was uploaded/);
    const good = await upload(ddpm, grant.leaseId, 5, body);
    expect(good.put.status).toBe(200);
    expect(
      await ddpm.request({
        type: 'checkpoint.commit',
        leaseId: grant.leaseId,
        checkpointId: good.url.checkpointId,
      }),
    ).toMatchObject({
      type: 'checkpoint.accepted',
      step: 5,
    });
    const again = await ddpm.request({
      type: 'checkpoint.commit',
      leaseId: grant.leaseId,
      checkpointId: good.url.checkpointId,
    });
    expect(again).toMatchObject({ type: 'error', code: 'out_of_order' });
    expect(
      await ddpm.request({
        type: 'checkpoint.begin',
        leaseId: grant.leaseId,
        step: 4,
        bytes: 10,
        sha256: 'a'.repeat(64),
        final: false,
      }),
    ).toMatchObject({
      code: 'invalid_message',
      reason: 'stale_checkpoint_step',
    });

    // Final checkpoint: the expert is done. It has the run's architecture (so the commit takes
    // it) but a NaN in its weights.
    const final = await upload(ddpm, grant.leaseId, 10, await h.checkpoint(grant, 10, NaN), true);
    expect(
      await ddpm.request({
        type: 'checkpoint.commit',
        leaseId: grant.leaseId,
        checkpointId: final.url.checkpointId,
      }),
    ).toMatchObject({
      type: 'checkpoint.accepted',
      step: 10,
    });
    ddpm.send({
      type: 'lease.complete',
      leaseId: grant.leaseId,
      checkpointId: final.url.checkpointId,
    });
    // Final checkpoint: the coordinator validates it before the expert is done.
    const after = (await api('GET', `/api/v1/runs/${run.id}`)).body as unknown as Run;
    expect(after.experts[0]).toMatchObject({ checkpointStep: 10 });
    expect(['validating', 'pending']).toContain(after.experts[0]!.status);
    expect(after.status).toBe('training');
    // These weights are poisoned: validation rejects them, the expert returns to the pool at its
    // last non-final checkpoint, and the reason is recorded.
    let judged = after;
    for (let i = 0; i < 200 && judged.experts[0]!.status === 'validating'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      judged = (await api('GET', `/api/v1/runs/${run.id}`)).body as unknown as Run;
    }
    expect(judged.experts[0]).toMatchObject({ status: 'pending', checkpointStep: 5 });
    expect(judged.experts[0]!.validationError).toMatch(/non_finite/);
    for (const c of [ddpm, ddpm2, fm]) c.close();
  });

  it('an expired lease returns the expert to the pool; the next worker resumes from the last accepted checkpoint', async () => {
    // Its own coordinator with a short lease TTL (closed by afterEach in place of the default one).
    const normal = h;
    await start({ heartbeatMs: 500, leaseTtlMs: 2000 });
    await normal.close();
    const run = await makeRun(1, 'fm', 20, 5);
    const { c: first } = await connect('fm');
    const g1 = (await first.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g1.expert.runId).toBe(run.id);
    const body = await h.checkpoint(g1, 5);
    // Renewed before each step of the upload, so it lands however slow the machine is; then
    // silence.
    const renew = async (step: number) =>
      expect(
        await first.request({
          type: 'heartbeat',
          leaseId: g1.leaseId,
          step,
          loss: 1,
          imagesPerSec: 1,
        }),
      ).toMatchObject({ type: 'heartbeat.ack' });
    await renew(4);
    const up = await upload(first, g1.leaseId, 5, body);
    await renew(5);
    expect(
      await first.request({
        type: 'checkpoint.commit',
        leaseId: g1.leaseId,
        checkpointId: up.url.checkpointId,
      }),
    ).toMatchObject({ type: 'checkpoint.accepted' });
    // No more heartbeats: the lease (TTL 2 s) expires; the worker hears lease.revoke.
    expect(await first.next(15_000)).toMatchObject({ type: 'lease.revoke', leaseId: g1.leaseId });
    expect(
      await first.request({
        type: 'heartbeat',
        leaseId: g1.leaseId,
        step: 6,
        loss: 1,
        imagesPerSec: 1,
      }),
    ).toMatchObject({ code: 'lease_expired' });
    const mid = (await api('GET', `/api/v1/runs/${run.id}`)).body as unknown as Run;
    expect(mid.experts[0]).toMatchObject({
      status: 'pending',
      step: 5,
      checkpointStep: 5,
      workerId: null,
    });
    const { c: second } = await connect('any');
    const g2 = (await second.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g2.expert.id).toBe(g1.expert.id);
    expect(g2.resumeFrom?.step).toBe(5);
    const resumed = new Uint8Array(
      await (await fetch(g2.resumeFrom!.checkpoint.url)).arrayBuffer(),
    );
    expect(sha(resumed)).toBe(sha(body));
    first.close();
    second.close();
  });

  it('revoking a token closes its live connections and ends their leases', async () => {
    const extra = await api('POST', '/api/v1/tokens', { name: 'to-revoke' });
    const { c } = await (async () => {
      const cl = await TestClient.connect(base);
      await cl.request(hello(extra.body.token as string, 'any'));
      return { c: cl };
    })();
    await makeRun(1, 'ddpm', 10, 5);
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g.type).toBe('lease.grant');
    const revoked = await api('DELETE', `/api/v1/tokens/${extra.body.id}`);
    expect(revoked.body).toMatchObject({ closedConnections: 1 });
    expect((await c.closedWith).code).toBe(4003);
    const again = await TestClient.connect(base);
    expect(await again.request(hello(extra.body.token as string, 'any'))).toMatchObject({
      code: 'token_revoked',
    });
    const { c: other } = await connect('ddpm');
    const regrant = (await other.request({ type: 'lease.request' })) as LeaseGrant;
    expect(regrant.expert.id).toBe(g.expert.id);
    other.close();
    expect(tokenId).toMatch(/^tok_/);
  });

  it('a token revoked by another process (the CLI) closes its connections at once, no heartbeat needed, and ends their leases', async () => {
    // Heartbeats a minute apart: the close below cannot wait for one.
    await h.close();
    await start({ heartbeatMs: 60_000, leaseTtlMs: 120_000 });
    const extra = await api('POST', '/api/v1/tokens', { name: 'cli-revoked' });
    const c = await TestClient.connect(base);
    await c.request(hello(extra.body.token as string, 'any'));
    await makeRun(1, 'fm', 10, 5);
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g.type).toBe('lease.grant');
    const cli = await execFileAsync(process.execPath, [
      BIN,
      'token',
      'revoke',
      extra.body.id as string,
      '--data-dir',
      server.coordinator.config.dataDir,
    ]);
    expect(cli.stdout).toMatch(/ended 1 active lease/);
    expect(await c.next()).toMatchObject({ type: 'error', code: 'token_revoked', fatal: true });
    expect((await c.closedWith).code).toBe(4003);
    const run = (await api('GET', `/api/v1/runs/${g.expert.runId}`)).body as unknown as Run;
    expect(run.experts[0]).toMatchObject({ status: 'pending', workerId: null });
    // Revoked in the database directly (another coordinator process): the same.
    const third = await api('POST', '/api/v1/tokens', { name: 'db-revoked' });
    const d = await TestClient.connect(base);
    await d.request(hello(third.body.token as string, 'any'));
    const db = openDatabase({
      file: path.join(server.coordinator.config.dataDir, 'coordinator.sqlite'),
    });
    revokeToken(db, third.body.id as string);
    db.$client.close();
    expect(await d.next()).toMatchObject({ type: 'error', code: 'token_revoked', fatal: true });
    expect((await d.closedWith).code).toBe(4003);
  });

  it('refuses an address after too many bad tokens, but not valid workers', async () => {
    for (let i = 0; i < 30; i++) {
      const bad = await TestClient.connect(base);
      expect(await bad.request(hello(`wt_wrong_${i}_0000000`, 'any'))).toMatchObject({
        code: 'unauthorized',
      });
    }
    const limited = await TestClient.connect(base);
    expect(await limited.request(hello(token, 'any'))).toMatchObject({
      code: 'rate_limited',
      fatal: true,
    });
    expect((await limited.closedWith).code).toBe(4029);
  });

  it('hands each expert to exactly one of many workers asking at once', async () => {
    // 200 workers of one token from one address: past the per-token and per-client defaults.
    await h.close();
    await start({
      heartbeatMs: 1000,
      leaseTtlMs: 10_000,
      maxConnectionsPerToken: 1000,
      maxLeasesPerToken: 1000,
      socketRateLimit: 1000,
    });
    const run = await makeRun(12, 'any', 10, 5);
    const clients = await Promise.all(Array.from({ length: 200 }, () => connect('any')));
    const replies = await Promise.all(clients.map(({ c }) => c.request({ type: 'lease.request' })));
    const grants = replies.filter(
      (r): r is LeaseGrant => r.type === 'lease.grant' && r.expert.runId === run.id,
    );
    expect(grants).toHaveLength(12);
    expect(new Set(grants.map((g) => g.expert.id)).size).toBe(12);
    expect(
      replies.filter((r) => r.type === 'lease.none').length +
        replies.filter((r) => r.type === 'lease.grant').length,
    ).toBe(200);
    for (const { c } of clients) c.close();
  });
});
