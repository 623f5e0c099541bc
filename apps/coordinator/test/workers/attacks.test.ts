/**
 * A hostile worker over a real socket (issue 12's attack suite): each attack is
 * refused with its code and changes nothing the coordinator had accepted.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  buildNetwork,
  decodeSafetensors,
  encodeSafetensors,
  loadCheckpoint,
  safetensorsHeaderLength,
  saveCheckpoint,
} from '@archipelago/models';
import type { CheckpointUrl, LeaseGrant, Run } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import S3rver from 's3rver';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checkpoints, experts, runs, shards } from '../../src/db/schema/index.js';
import { DEFAULT_ACCEPTANCE } from '../../src/services/acceptance.js';
import { runCheckpointShape } from '../../src/services/checkpoint-objects.js';
import { type Harness, sha, startHarness } from './coordinator-harness.js';
import { hello, TestClient } from './socket-client.js';

/** Every accepted checkpoint's object: there, named by its sha256, and hashing to it. */
async function acceptedObjectsHashRight(h: Harness) {
  const rows = h.server.coordinator.db
    .select()
    .from(checkpoints)
    .where(eq(checkpoints.status, 'accepted'))
    .all();
  for (const row of rows) {
    expect(row.key).toContain(row.sha256);
    expect(sha(await h.server.coordinator.store.getBytes(row.key)), row.key).toBe(row.sha256);
  }
  return rows;
}

async function listKeys(h: Harness, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const { key } of h.server.coordinator.store.list(prefix)) keys.push(key);
  return keys;
}

const checkpointRow = (h: Harness, id: string) =>
  h.server.coordinator.db.select().from(checkpoints).where(eq(checkpoints.id, id)).get();

const runRow = (h: Harness, id: string) =>
  h.server.coordinator.db.select().from(runs).where(eq(runs.id, id)).get()!;

/** The status and error code of a refused store request. */
async function errorOf(res: Response) {
  const body = (await res.json()) as { error: { code: string; message: string } };
  return { status: res.status, ...body.error };
}

describe('hostile workers cannot hoard or brick experts', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => h.close());

  const expertsOf = async (run: Run) =>
    ((await h.api('GET', `/api/v1/runs/${run.id}`)).body as unknown as Run).experts;

  it('hoarding: a second lease.request while holding a lease is refused (lease_held); others still get work', async () => {
    const run = await h.makeRun(2, 'any');
    const { c: greedy, welcome } = await h.connect('any');
    const grant = (await greedy.request({ type: 'lease.request' })) as LeaseGrant;
    expect(grant.type).toBe('lease.grant');
    expect(await greedy.request({ type: 'lease.request' })).toMatchObject({
      type: 'error',
      code: 'lease_held',
      fatal: false,
    });
    // The same identity on a second connection is the same worker (it replaces the first
    // connection): still one lease.
    const { c: twin } = await h.connect('any', { workerId: welcome.workerId });
    await greedy.closedWith;
    expect(await twin.request({ type: 'lease.request' })).toMatchObject({ code: 'lease_held' });
    // An honest worker gets the other expert.
    const { c: honest } = await h.connect('any');
    const other = (await honest.request({ type: 'lease.request' })) as LeaseGrant;
    expect(other.type).toBe('lease.grant');
    expect(other.expert.id).not.toBe(grant.expert.id);
    expect((await expertsOf(run)).map((e) => e.status).sort()).toEqual(['leased', 'leased']);
    // Once its lease is released, the worker may ask again and gets the expert it gave back.
    twin.send({ type: 'lease.release', leaseId: grant.leaseId, reason: 'done hoarding' });
    const again = (await twin.request({ type: 'lease.request' })) as LeaseGrant;
    expect(again).toMatchObject({ type: 'lease.grant', expert: { id: grant.expert.id } });
    for (const c of [greedy, twin, honest]) c.close();
  });

  it('bricking: a non-final checkpoint at the target step is refused; the final one still lands', async () => {
    const run = await h.makeRun(1, 'fm', 10, 5);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    expect(
      await c.request({
        type: 'checkpoint.begin',
        leaseId: g.leaseId,
        step: 10,
        bytes: 100,
        sha256: 'a'.repeat(64),
        final: false,
      }),
    ).toMatchObject({ type: 'error', code: 'invalid_message', message: /must be the final one/ });
    expect((await expertsOf(run))[0]).toMatchObject({ checkpointStep: null, status: 'leased' });
    const body = await h.checkpoint(g, 10);
    const up = await h.upload(c, g.leaseId, 10, body, true);
    expect(up.put.status).toBe(200);
    expect(
      await c.request({
        type: 'checkpoint.commit',
        leaseId: g.leaseId,
        checkpointId: up.url.checkpointId,
      }),
    ).toMatchObject({ type: 'checkpoint.accepted', step: 10 });
    c.close();
  });

  it('heartbeats cannot move an expert back past its resume point, nor past its target', async () => {
    const run = await h.makeRun(1, 'fm', 20, 5);
    const { c: first } = await h.connect('fm');
    const g1 = (await first.request({ type: 'lease.request' })) as LeaseGrant;
    const up = await h.upload(first, g1.leaseId, 5, await h.checkpoint(g1, 5));
    expect(
      await first.request({
        type: 'checkpoint.commit',
        leaseId: g1.leaseId,
        checkpointId: up.url.checkpointId,
      }),
    ).toMatchObject({ type: 'checkpoint.accepted' });
    first.send({ type: 'lease.release', leaseId: g1.leaseId, reason: 'bye' });
    await first.next(500).catch(() => undefined);
    const { c: second } = await h.connect('fm');
    const g2 = (await second.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g2.resumeFrom?.step).toBe(5);
    const beat = (step: number) =>
      second.request({ type: 'heartbeat', leaseId: g2.leaseId, step, loss: 0.5, imagesPerSec: 1 });
    for (const step of [0, 4, 21]) {
      expect(await beat(step)).toMatchObject({
        type: 'error',
        code: 'invalid_message',
        message: /outside/,
      });
    }
    expect((await expertsOf(run))[0]).toMatchObject({ step: 5, checkpointStep: 5 });
    expect(await beat(7)).toMatchObject({ type: 'heartbeat.ack' });
    expect((await expertsOf(run))[0]).toMatchObject({ step: 7, checkpointStep: 5 });
    first.close();
    second.close();
  });
});

/**
 * Poisoning (issue 12, the acceptance test): everything a worker reports about a final checkpoint
 * (the shard's fingerprint, the objective spec, the step) can be copied from its grant, so none of
 * it is evidence. A final whose metadata is exactly right but whose weights were never trained is
 * taken for validation and then rejected by the acceptance test under the run's default bar.
 */
describe('a hostile final checkpoint with a copied fingerprint', () => {
  let h: Harness;
  beforeEach(async () => {
    // Leases that outlast the test on a loaded machine: nothing here is about expiry, and the
    // bystander's lease must not expire (and its expert be re-leased) while the attack runs.
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 600_000 });
  });
  afterEach(async () => h.close());

  /**
   * An untrained network of the run's architecture (the DiT's output projection starts at zero:
   * it predicts velocity 0), saved with the grant's exact metadata.
   */
  const freshNetwork = async (g: LeaseGrant, step: number) => {
    const { meta } = loadCheckpoint(await h.checkpoint(g, step));
    const { kind, ...config } = meta.architecture as { kind: 'dit' } & Record<string, unknown>;
    const net = buildNetwork({ kind, config } as never, 7);
    try {
      return await saveCheckpoint({ params: net.params, meta });
    } finally {
      net.dispose();
    }
  };

  it('poison with a copied fingerprint: the commit is taken, the acceptance test rejects it, no ensemble', async () => {
    const run = await h.makeRun(2, 'fm', 10, 5);
    // No acceptance policy given: the run holds the coordinator's default, honest bar.
    expect(run.config.acceptance).toEqual(DEFAULT_ACCEPTANCE);
    // A bystander on the other expert holds an accepted checkpoint the attack must not touch.
    const { c: honest } = await h.connect('fm');
    const hg = (await honest.request({ type: 'lease.request' })) as LeaseGrant;
    const resume = await h.checkpoint(hg, 5);
    const hup = await h.upload(honest, hg.leaseId, 5, resume);
    expect(
      await honest.request({
        type: 'checkpoint.commit',
        leaseId: hg.leaseId,
        checkpointId: hup.url.checkpointId,
      }),
    ).toMatchObject({ type: 'checkpoint.accepted', step: 5 });
    const { c } = await h.connect('fm');
    const impostors: [string, (g: LeaseGrant) => Promise<Uint8Array>][] = [
      ['a freshly initialised network', (g) => freshNetwork(g, g.training.targetSteps)],
      ['every weight 0.01', (g) => h.checkpoint(g, g.training.targetSteps, 0.01)],
    ];
    for (const [name, build] of impostors) {
      const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
      expect(g.type, name).toBe('lease.grant');
      expect(g.expert.id).not.toBe(hg.expert.id);
      // What it is judged on never reached it: no held-out split, and no URL of one, in the grant.
      expect(Object.keys(g.shard).sort()).toEqual(['count', 'train', 'valCount']);
      const heldOut = h.server.coordinator.db
        .select()
        .from(shards)
        .where(eq(shards.split, 'val'))
        .all();
      expect(heldOut.length).toBeGreaterThan(0);
      // (A presigned URL names its key: the training shard's is there.)
      expect(g.shard.train.url).toContain(
        h.server.coordinator.db
          .select()
          .from(shards)
          .where(eq(shards.sha256, g.shard.train.sha256))
          .get()!.key,
      );
      for (const v of heldOut) expect(JSON.stringify(g)).not.toContain(v.key);
      const bytes = await build(g);
      // Every worker-reported field is exactly what the coordinator expects of this expert.
      expect(loadCheckpoint(bytes).meta, name).toMatchObject({
        kind: 'expert',
        dataFingerprint: g.shard.train.sha256,
        spec: g.spec,
        objective: g.objective,
        step: g.training.targetSteps,
      });
      const up = await h.upload(c, g.leaseId, g.training.targetSteps, bytes, true);
      expect(up.put.status).toBe(200);
      expect(
        await c.request({
          type: 'checkpoint.commit',
          leaseId: g.leaseId,
          checkpointId: up.url.checkpointId,
        }),
        name,
      ).toMatchObject({ type: 'checkpoint.accepted', step: g.training.targetSteps });
      c.send({ type: 'lease.complete', leaseId: g.leaseId, checkpointId: up.url.checkpointId });
      let shown = (await h.api('GET', `/api/v1/runs/${run.id}`)).body as unknown as Run;
      const mine = () => shown.experts.find((e) => e.id === g.expert.id)!;
      for (let i = 0; i < 600 && mine().status !== 'pending' && mine().status !== 'done'; i++) {
        await new Promise((r) => setTimeout(r, 50));
        shown = (await h.api('GET', `/api/v1/runs/${run.id}`)).body as unknown as Run;
      }
      // Rejected by the acceptance test (not by a metadata check: there was nothing wrong to
      // find), back in the pool from scratch, its margins recorded.
      expect(mine(), name).toMatchObject({ status: 'pending', checkpointStep: null, step: 0 });
      expect(mine().validationError, name).toMatch(
        /^(no_better_than_reference|worse_than_reference|not_specific): /,
      );
      expect(mine().acceptance!.midRatio, name).toBeGreaterThan(DEFAULT_ACCEPTANCE.maxMidRatio);
      const row = checkpointRow(h, up.url.checkpointId)!;
      expect(row).toMatchObject({ status: 'rejected', reason: mine().validationError });
      // Its own object is deleted just after the verdict is recorded.
      for (let i = 0; i < 100 && (await h.server.coordinator.store.head(row.key)); i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(await h.server.coordinator.store.head(row.key)).toBeNull();
      expect(shown.status).toBe('training');
      expect((await h.api('GET', `/api/v1/runs/${run.id}/ensembles`)).body).toEqual({
        ensembles: [],
      });
      const kept = await acceptedObjectsHashRight(h);
      expect(kept.map((k) => k.sha256)).toEqual([sha(resume)]);
    }
    for (const x of [c, honest]) x.close();
  });
});

describe('a hostile hello', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => h.close());

  it('unbounded hardware fields are refused with invalid_message; nothing is recorded', async () => {
    const before = (await h.api('GET', '/api/v1/workers')).body as { workers: unknown[] };
    for (const hardware of [
      { cpus: 2, memoryBytes: 1e9, threads: 1, gpu: { index: 0, junk: 'x'.repeat(1000) } },
      { cpus: 2, memoryBytes: 2 ** 60, threads: 1 },
      { cpus: 2, memoryBytes: 1e9, threads: 1, gpu: { index: 1e9 } },
    ]) {
      const c = await TestClient.connect(h.base);
      expect(await c.request(hello(h.token, 'any', { hardware }))).toMatchObject({
        type: 'error',
        code: 'invalid_message',
        inReplyTo: 'hello',
      });
      c.close();
    }
    const after = (await h.api('GET', '/api/v1/workers')).body as { workers: unknown[] };
    expect(after.workers.length).toBe(before.workers.length);
  });

  it("the public event log names no volunteer's address", async () => {
    const { c } = await h.connect('any');
    const res = await fetch(`${h.base}/api/v1/events?limit=50`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).toContain('worker.connected');
    expect(text).not.toMatch(/127\.0\.0\.1|::1|::ffff/);
    c.close();
  });
});

describe('a connection that never says hello', () => {
  it('is closed after the hello deadline with a fatal out_of_order; one that says hello in time stays', async () => {
    const h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 10_000, helloTimeoutMs: 300 });
    try {
      const silent = await TestClient.connect(h.base);
      expect(await silent.next(5000)).toMatchObject({
        type: 'error',
        code: 'out_of_order',
        fatal: true,
        message: /no hello within 300 ms/,
      });
      expect((await silent.closedWith).code).toBe(1008);
      const { c } = await h.connect('any');
      await new Promise((r) => setTimeout(r, 600));
      expect((await c.request({ type: 'lease.request' })).type).toMatch(/^lease\./);
      c.close();
    } finally {
      await h.close();
    }
  });
});

/**
 * Hostile uploads (issue 12, immutable objects and bounds). After every attack, each accepted
 * checkpoint's object still hashes to its recorded sha256.
 */
describe('hostile uploads cannot overwrite, replay, oversize or bloat checkpoints', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => h.close());

  const begin = (c: TestClient, leaseId: string, step: number, bytes: Uint8Array, final = false) =>
    c.request({
      type: 'checkpoint.begin',
      leaseId,
      step,
      bytes: bytes.length,
      sha256: sha(bytes),
      final,
    });
  const put = (url: CheckpointUrl, body: Uint8Array) =>
    fetch(url.putUrl, { method: 'PUT', headers: url.headers, body });
  const commit = (c: TestClient, leaseId: string, checkpointId: string) =>
    c.request({ type: 'checkpoint.commit', leaseId, checkpointId });
  const leaseOne = async (objective: 'fm' | 'ddpm' = 'fm') => {
    const { c } = await h.connect(objective);
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    expect(g.type).toBe('lease.grant');
    return { c, g };
  };

  it('two uploads at one step: the first URL dies, one is accepted, the other commit and a third begin are refused', async () => {
    await h.makeRun(1, 'fm', 20, 5);
    const { c, g } = await leaseOne();
    const good = await h.checkpoint(g, 5, 0.01);
    // Other weights, as plausible as the first (zero output: no worse than an untrained network,
    // so the next grant's resume check passes it; resume-points.test.ts shows what fails it).
    const bogus = await h.checkpoint(g, 5, 0);
    const a = (await begin(c, g.leaseId, 5, good)) as CheckpointUrl;
    const b = (await begin(c, g.leaseId, 5, bogus)) as CheckpointUrl;
    expect([a.type, b.type]).toEqual(['checkpoint.url', 'checkpoint.url']);
    expect(a.putUrl).not.toBe(b.putUrl);
    // The second begin closed the first upload: its URL is refused.
    expect(await errorOf(await put(a, good))).toMatchObject({ status: 403, code: 'upload_closed' });
    expect((await put(b, bogus)).status).toBe(200);
    expect(await commit(c, g.leaseId, b.checkpointId)).toMatchObject({
      type: 'checkpoint.accepted',
      step: 5,
    });
    expect(await commit(c, g.leaseId, a.checkpointId)).toMatchObject({
      type: 'error',
      code: 'out_of_order',
    });
    expect(await commit(c, g.leaseId, b.checkpointId)).toMatchObject({ code: 'out_of_order' });
    expect(await begin(c, g.leaseId, 5, good)).toMatchObject({
      code: 'invalid_message',
      reason: 'stale_checkpoint_step',
    });
    expect(await errorOf(await put(b, good))).toMatchObject({ code: 'upload_closed' });
    const kept = await acceptedObjectsHashRight(h);
    expect(kept).toHaveLength(1);
    expect(kept[0]!.sha256).toBe(sha(bogus));
    expect(kept[0]!.key).toContain(sha(bogus));
    // The next worker resumes from those very bytes.
    c.send({ type: 'lease.release', leaseId: g.leaseId, reason: 'x' });
    await c.next(500).catch(() => undefined);
    const { g: next } = await leaseOne();
    expect(next.resumeFrom?.step).toBe(5);
    const resumed = new Uint8Array(
      await (await fetch(next.resumeFrom!.checkpoint.url)).arrayBuffer(),
    );
    expect(sha(resumed)).toBe(sha(bogus));
  });

  it('an upload URL dies with its lease (released or revoked): replays are refused, nothing is stored', async () => {
    await h.makeRun(2, 'fm', 20, 5);
    const { c, g } = await leaseOne();
    const five = await h.checkpoint(g, 5);
    const first = (await begin(c, g.leaseId, 5, five)) as CheckpointUrl;
    expect((await put(first, five)).status).toBe(200);
    expect(await commit(c, g.leaseId, first.checkpointId)).toMatchObject({
      type: 'checkpoint.accepted',
    });
    const ten = await h.checkpoint(g, 10);
    const open = (await begin(c, g.leaseId, 10, ten)) as CheckpointUrl;
    c.send({ type: 'lease.release', leaseId: g.leaseId, reason: 'leaving' });
    await c.next(500).catch(() => undefined);
    for (const [url, body] of [
      [open, ten],
      [first, five],
    ] as const) {
      expect(await errorOf(await put(url, body))).toMatchObject({
        status: 403,
        code: 'upload_closed',
        message: expect.stringMatching(/closed/),
      });
    }
    // Revoked: a token's workers lose their leases and their open uploads' URLs at once.
    const extra = await h.api('POST', '/api/v1/tokens', { name: 'soon-revoked' });
    const rc = await TestClient.connect(h.base);
    await rc.request(hello(extra.body.token as string, 'fm'));
    const rg = (await rc.request({ type: 'lease.request' })) as LeaseGrant;
    const rbytes = await h.checkpoint(rg, 5);
    const rurl = (await begin(rc, rg.leaseId, 5, rbytes)) as CheckpointUrl;
    expect(rurl.type).toBe('checkpoint.url');
    await h.api('DELETE', `/api/v1/tokens/${extra.body.id}`);
    expect(await errorOf(await put(rurl, rbytes))).toMatchObject({ code: 'upload_closed' });
    await h.server.coordinator.hub.collectGarbage();
    expect(await listKeys(h, 'uploads/')).toEqual([]);
    expect(checkpointRow(h, open.checkpointId)).toMatchObject({ status: 'rejected' });
    expect(await acceptedObjectsHashRight(h)).toHaveLength(1);
  });

  it('an accepted final (what a manifest names) cannot be overwritten: replayed, forged and direct writes are refused', async () => {
    await h.makeRun(1, 'fm', 10, 5);
    const { c, g } = await leaseOne();
    const five = await h.checkpoint(g, 5);
    const u5 = (await begin(c, g.leaseId, 5, five)) as CheckpointUrl;
    await put(u5, five);
    expect((await commit(c, g.leaseId, u5.checkpointId)).type).toBe('checkpoint.accepted');
    // The final's validation job is held back: the accepted final stays what it is meanwhile.
    await h.server.coordinator.jobs.stop();
    const final = await h.checkpoint(g, 10);
    const uf = (await begin(c, g.leaseId, 10, final, true)) as CheckpointUrl;
    await put(uf, final);
    expect(await commit(c, g.leaseId, uf.checkpointId)).toMatchObject({
      type: 'checkpoint.accepted',
      step: 10,
    });
    const row = checkpointRow(h, uf.checkpointId)!;
    expect(row.key).toMatch(new RegExp(`ckpt-000000010-${sha(final)}\\.safetensors$`));
    const evil = await h.checkpoint(g, 10, 0.9);
    // Its own URL, replayed.
    expect(await errorOf(await put(uf, evil))).toMatchObject({ code: 'upload_closed' });
    // A URL bent to the accepted key: the signature covers the key.
    const forged = new URL(uf.putUrl);
    forged.pathname = `/store/${row.key}`;
    const bent = await fetch(forged, { method: 'PUT', headers: uf.headers, body: evil });
    expect(await errorOf(bent)).toMatchObject({ status: 403, code: 'bad_signature' });
    // Even the coordinator's own store refuses to replace it.
    await expect(
      h.server.coordinator.store.put(row.key, evil, { createOnly: true }),
    ).rejects.toMatchObject({ code: 'already_exists' });
    expect(sha(await h.server.coordinator.store.getBytes(row.key))).toBe(sha(final));
    await acceptedObjectsHashRight(h);
  });

  it('sizes no checkpoint of the architecture has are refused at begin (checkpoint_size); a short or long PUT stores nothing', async () => {
    const run = await h.makeRun(1, 'fm', 20, 5);
    const { c, g } = await leaseOne();
    const good = await h.checkpoint(g, 5);
    const shape = runCheckpointShape(runRow(h, run.id));
    for (const bytes of [shape.maxBytes + 1, shape.tensorBytes, 5 * 1024 ** 3]) {
      expect(
        await c.request({
          type: 'checkpoint.begin',
          leaseId: g.leaseId,
          step: 5,
          bytes,
          sha256: sha(good),
          final: false,
        }),
      ).toMatchObject({ type: 'error', code: 'invalid_message', reason: 'checkpoint_size' });
    }
    const url = (await begin(c, g.leaseId, 5, good)) as CheckpointUrl;
    const long = new Uint8Array(good.length + 64);
    long.set(good);
    expect(await errorOf(await fetch(url.putUrl, { method: 'PUT', body: long }))).toMatchObject({
      status: 413,
      code: 'too_large',
    });
    expect(
      await errorOf(await fetch(url.putUrl, { method: 'PUT', body: good.subarray(0, 100) })),
    ).toMatchObject({ code: 'size_mismatch' });
    const rejected = await commit(c, g.leaseId, url.checkpointId);
    expect(rejected).toMatchObject({ type: 'checkpoint.rejected' });
    expect((rejected as { reason: string }).reason).toMatch(/^missing_object: /);
    expect(await listKeys(h, 'uploads/')).toEqual([]);
    expect(await acceptedObjectsHashRight(h)).toEqual([]);
  });

  it('a header too large or naming other tensors is refused at commit, before any tensor data counts', async () => {
    const run = await h.makeRun(1, 'fm', 20, 5);
    const { c, g } = await leaseOne();
    const good = await h.checkpoint(g, 5);
    const shape = runCheckpointShape(runRow(h, run.id));
    const { metadata, tensors } = decodeSafetensors(good);
    // One tensor renamed: the same size, the wrong network.
    const [first, ...rest] = Object.keys(tensors);
    const renamed = encodeSafetensors(
      Object.fromEntries([
        [`${first}.evil`, tensors[first!]!],
        ...rest.map((n) => [n, tensors[n]!]),
      ]),
      metadata,
    );
    // A header padded just past the architecture's limit, the file still within its size bounds:
    // one small tensor left out to make room.
    const small = Object.keys(tensors)
      .filter((n) => tensors[n]!.data.length >= 16)
      .sort((x, y) => tensors[x]!.data.length - tensors[y]!.data.length)[0]!;
    const fewer = Object.fromEntries(
      Object.keys(tensors)
        .filter((n) => n !== small)
        .map((n) => [n, tensors[n]!]),
    );
    const plain = encodeSafetensors(fewer, metadata);
    const room = shape.maxHeaderBytes - safetensorsHeaderLength(plain, plain.length);
    const bloated = encodeSafetensors(fewer, { ...metadata, padding: 'x'.repeat(room + 8) });
    expect(safetensorsHeaderLength(bloated, bloated.length)).toBeGreaterThan(shape.maxHeaderBytes);
    expect(bloated.length).toBeGreaterThanOrEqual(shape.minBytes);
    expect(bloated.length).toBeLessThanOrEqual(shape.maxBytes);
    const cases: [Uint8Array, RegExp][] = [
      [renamed, /^bad_header: .*unexpected_tensor|^bad_header: .*missing_tensor/],
      [bloated, /^bad_header: .*header_too_large/],
      [await h.checkpoint(g, 10), /^bad_header: the checkpoint says step 10, announced 5/],
    ];
    for (const [bytes, reason] of cases) {
      const url = (await begin(c, g.leaseId, 5, bytes)) as CheckpointUrl;
      expect(url.type, JSON.stringify(url)).toBe('checkpoint.url');
      expect((await put(url, bytes)).status).toBe(200);
      const answer = (await commit(c, g.leaseId, url.checkpointId)) as {
        type: string;
        reason: string;
      };
      expect(answer.type).toBe('checkpoint.rejected');
      expect(answer.reason).toMatch(reason);
      expect(await listKeys(h, 'uploads/')).toEqual([]);
    }
    const ok = (await begin(c, g.leaseId, 5, good)) as CheckpointUrl;
    await put(ok, good);
    expect((await commit(c, g.leaseId, ok.checkpointId)).type).toBe('checkpoint.accepted');
    expect(await acceptedObjectsHashRight(h)).toHaveLength(1);
  });

  it('a step off the checkpoint interval is refused (checkpoint_step)', async () => {
    await h.makeRun(1, 'fm', 22, 5);
    const { c, g } = await leaseOne();
    for (const step of [0, 3, 7, 21]) {
      expect(await begin(c, g.leaseId, step, await h.checkpoint(g, step))).toMatchObject({
        type: 'error',
        code: 'invalid_message',
        reason: 'checkpoint_step',
      });
    }
    // Multiples of the interval and the target (22, final) are fine.
    expect((await begin(c, g.leaseId, 20, await h.checkpoint(g, 20))).type).toBe('checkpoint.url');
    expect((await begin(c, g.leaseId, 22, await h.checkpoint(g, 22), true)).type).toBe(
      'checkpoint.url',
    );
  });

  it('superseded checkpoints are collected: at most two objects per expert while it trains', async () => {
    const run = await h.makeRun(1, 'fm', 30, 5);
    const { c, g } = await leaseOne();
    const prefix = `runs/${run.id}/experts/0/`;
    for (const step of [5, 10, 15, 20, 25]) {
      const bytes = await h.checkpoint(g, step);
      const url = (await begin(c, g.leaseId, step, bytes)) as CheckpointUrl;
      await put(url, bytes);
      expect((await commit(c, g.leaseId, url.checkpointId)).type).toBe('checkpoint.accepted');
      const objects = await listKeys(h, prefix);
      expect(objects.length).toBeLessThanOrEqual(2);
      expect(objects).toContain(checkpointRow(h, url.checkpointId)!.key);
      expect(await listKeys(h, 'uploads/')).toEqual([]);
    }
    const statuses = h.server.coordinator.db
      .select({ step: checkpoints.step, status: checkpoints.status })
      .from(checkpoints)
      .all()
      .sort((x, y) => x.step - y.step);
    expect(statuses.map((s) => s.status)).toEqual([
      'superseded',
      'superseded',
      'superseded',
      'superseded',
      'accepted',
    ]);
    // The final joins the newest non-final (what a rejected final falls back to). Its validation
    // job is held back so that the final stays accepted while it is counted.
    await h.server.coordinator.jobs.stop();
    const final = await h.checkpoint(g, 30);
    const uf = (await begin(c, g.leaseId, 30, final, true)) as CheckpointUrl;
    await put(uf, final);
    expect((await commit(c, g.leaseId, uf.checkpointId)).type).toBe('checkpoint.accepted');
    expect((await listKeys(h, prefix)).length).toBeLessThanOrEqual(2);
    expect(await acceptedObjectsHashRight(h)).toHaveLength(2);
    // Once the expert is done (as validation would leave it), only its final is kept.
    h.server.coordinator.db
      .update(experts)
      .set({ status: 'done' })
      .where(eq(experts.id, g.expert.id))
      .run();
    await h.server.coordinator.hub.collectGarbage();
    expect(await listKeys(h, prefix)).toEqual([checkpointRow(h, uf.checkpointId)!.key]);
    expect(await acceptedObjectsHashRight(h)).toHaveLength(1);
  });
});

describe('hostile uploads against an S3 store (real s3rver)', () => {
  let dir: string;
  let s3: S3rver;
  let h: Harness;
  const saved = { ...process.env };
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-attack-s3-'));
    s3 = new S3rver({
      port: 0,
      address: '127.0.0.1',
      silent: true,
      directory: dir,
      configureBuckets: [{ name: 'attack' }],
    });
    const { port } = await s3.run();
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });
    h = await startHarness(undefined, {
      ARCHIPELAGO_S3_BUCKET: 'attack',
      ARCHIPELAGO_S3_ENDPOINT: `http://127.0.0.1:${port}`,
      ARCHIPELAGO_S3_FORCE_PATH_STYLE: 'true',
    });
  });
  afterAll(async () => {
    await h?.close();
    await s3?.close();
    process.env = saved;
    await rm(dir, { recursive: true, force: true });
  });

  // S3 cannot revoke a presigned URL and s3rver enforces none of its signed conditions, so a
  // replayed URL does write. It can only write its own upload key, though: the commit is refused,
  // the accepted object (a content key no URL names) is untouched, and the stray object collected.
  it('a replayed PUT URL writes only its own upload key: refused at commit, collected, the accepted object intact', async () => {
    await h.makeRun(1, 'fm', 20, 5);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    const good = await h.checkpoint(g, 5);
    const url = (await c.request({
      type: 'checkpoint.begin',
      leaseId: g.leaseId,
      step: 5,
      bytes: good.length,
      sha256: sha(good),
      final: false,
    })) as CheckpointUrl;
    expect(url.headers).toMatchObject({ 'if-none-match': '*' });
    expect(new URL(url.putUrl).searchParams.get('X-Amz-Expires')).toBe('600');
    await fetch(url.putUrl, { method: 'PUT', headers: url.headers, body: good });
    expect(
      await c.request({
        type: 'checkpoint.commit',
        leaseId: g.leaseId,
        checkpointId: url.checkpointId,
      }),
    ).toMatchObject({ type: 'checkpoint.accepted' });
    expect(await listKeys(h, 'uploads/')).toEqual([]);
    const evil = await h.checkpoint(g, 5, 0.7);
    const replay = await fetch(url.putUrl, { method: 'PUT', headers: url.headers, body: evil });
    expect(replay.status).toBe(200); // s3rver takes it (S3 would refuse: If-None-Match)
    expect(await listKeys(h, 'uploads/')).toEqual([`uploads/${url.checkpointId}.safetensors`]);
    expect(
      await c.request({
        type: 'checkpoint.commit',
        leaseId: g.leaseId,
        checkpointId: url.checkpointId,
      }),
    ).toMatchObject({ type: 'error', code: 'out_of_order' });
    await h.server.coordinator.hub.collectGarbage();
    expect(await listKeys(h, 'uploads/')).toEqual([]);
    const [kept] = await acceptedObjectsHashRight(h);
    expect(kept!.sha256).toBe(sha(good));
    c.close();
  });

  it('what the bucket holds is checked, not what the URL promised: size, header before hash, hash', async () => {
    await h.makeRun(1, 'fm', 20, 5);
    const { c } = await h.connect('fm');
    const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
    const good = await h.checkpoint(g, 10);
    const announce = async (bytes: Uint8Array, body: Uint8Array) => {
      const url = (await c.request({
        type: 'checkpoint.begin',
        leaseId: g.leaseId,
        step: 10,
        bytes: bytes.length,
        sha256: sha(bytes),
        final: false,
      })) as CheckpointUrl;
      expect(url.type, JSON.stringify(url)).toBe('checkpoint.url');
      // s3rver ignores the signed length and checksum: the body is stored as sent.
      const { 'content-length': _n, 'x-amz-checksum-sha256': _c, ...headers } = url.headers;
      await fetch(url.putUrl, { method: 'PUT', headers, body });
      const answer = (await c.request({
        type: 'checkpoint.commit',
        leaseId: g.leaseId,
        checkpointId: url.checkpointId,
      })) as { type: string; reason: string };
      expect(answer.type).toBe('checkpoint.rejected');
      expect(await listKeys(h, 'uploads/')).toEqual([]);
      return answer.reason;
    };
    const longer = new Uint8Array(good.length + 8);
    longer.set(good);
    expect(await announce(good, longer)).toMatch(/^size_mismatch: /);
    // Another header of the same size under good's announced sha256: refused for its header,
    // so it was judged before its bytes were hashed.
    const wrong = await h.checkpoint(g, 15);
    expect(wrong.length).toBe(good.length);
    expect(await announce(good, wrong)).toMatch(/^bad_header: the checkpoint says step 15/);
    const flipped = good.slice();
    flipped[flipped.length - 1]! ^= 0xff;
    expect(await announce(good, flipped)).toMatch(/^sha256_mismatch: /);
    expect((await acceptedObjectsHashRight(h)).length).toBeGreaterThanOrEqual(1);
    c.close();
  });
});
