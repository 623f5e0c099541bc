/**
 * Checkpoint uploads through a faulty store (issue 13, point 6), over real sockets: a real
 * coordinator process whose presigned PUT URLs point at a fault-injecting node:http proxy in front
 * of its own local store (ARCHIPELAGO_PUBLIC_URL is the proxy), and the worker's CheckpointUpload
 * on a real Connection. The proxy resets connections, answers 503, stalls and closes after the
 * store answered, cuts a body halfway, or closes the upload under the worker, for the first PUTs;
 * every test checks what the coordinator accepted, that the stored bytes hash right, and how many
 * PUTs and begins it took. No timing is asserted. The proxy is ./fault-proxy.ts (the chaos run's too).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  architectureOf,
  ditConfigFromPreset,
  paramShapesOf,
  resolveNetworkSpec,
  saveCheckpoint,
} from '@archipelago/models';
import { type LeaseGrant, PROTOCOL_VERSIONS, type WorkerMessage } from '@archipelago/protocol';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backoff } from '../src/backoff.js';
import { CheckpointUpload } from '../src/checkpoint-upload.js';
import { Connection } from '../src/connection.js';
import { FaultProxy } from './fault-proxy.js';
import { CoordinatorProcess, freePort } from './harness.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('checkpoint uploads through a faulty store', () => {
  let dir: string;
  let coord: CoordinatorProcess;
  let token: string;
  const proxy = new FaultProxy();
  const conns: Connection[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-upload-faults-'));
    const proxyUrl = await proxy.listen();
    proxy.target = await freePort();
    coord = new CoordinatorProcess(proxy.target, path.join(dir, 'data'));
    await coord.start({
      ARCHIPELAGO_PUBLIC_URL: proxyUrl,
      // These tests send no heartbeats: leases outlive them.
      ARCHIPELAGO_LEASE_TTL_MS: '120000',
    });
    token = (await coord.token('uploads')).token;
    const datasetId = await coord.importMnist(4);
    await coord.createRun({
      datasetId,
      experts: 4,
      objectives: 'fm:4',
      stepsPerExpert: 20,
      checkpointInterval: 10,
      batchSize: 8,
      model: 'tiny',
    });
  }, 180_000);

  afterAll(async () => {
    await Promise.all(conns.map((c) => c.close()));
    await coord?.stop();
    await proxy.close();
    await rm(dir, { recursive: true, force: true });
  });

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

  /** A checkpoint of the grant's expert at `step` as its trainer would write it (untrained). */
  const checkpointOf = (g: LeaseGrant, step: number) => {
    const spec = resolveNetworkSpec({
      kind: 'dit',
      config: ditConfigFromPreset(g.model.preset, {
        imageSize: g.model.imageSize,
        channels: g.model.channels,
        numClasses: g.model.numClasses,
        ...(g.model.patchSize !== undefined ? { patchSize: g.model.patchSize } : {}),
      }),
    });
    const params = Object.fromEntries(
      Object.entries(paramShapesOf(spec)).map(([name, shape]) => [
        name,
        { shape, data: new Float32Array(shape.reduce((n, d) => n * d, 1)).fill(0.01) },
      ]),
    );
    return saveCheckpoint({
      params,
      meta: {
        kind: 'expert',
        architecture: architectureOf(spec),
        objective: g.objective as 'fm',
        spec: g.spec as unknown as Record<string, unknown>,
        step,
        dataFingerprint: g.shard.train.sha256,
      },
    });
  };

  /** A worker connection holding a lease, and a CheckpointUpload of its step-10 checkpoint. */
  const leased = async () => {
    const conn = new Connection({
      coordinator: coord.url,
      hello: () => ({
        type: 'hello',
        protocols: [...PROTOCOL_VERSIONS],
        token,
        name: 'uploader',
        objective: 'fm',
        backend: 'wasm',
        hardware: { cpus: 1, memoryBytes: 0, threads: 1 },
        version: '0.0.0',
      }),
      onWelcome: () => {},
      onMessage: () => {},
      onRefused: () => {},
      log: () => {},
    });
    conns.push(conn);
    conn.start();
    await conn.waitReady();
    const grant = await conn.request({ type: 'lease.request' }, ['lease.grant']);
    const bytes = await checkpointOf(grant, 10);
    /** The frames the upload sent, by type. */
    const sent: WorkerMessage['type'][] = [];
    const logs: string[] = [];
    const upload = new CheckpointUpload({
      leaseId: grant.leaseId,
      targetSteps: 20,
      conn: {
        get ready() {
          return conn.ready;
        },
        get welcomed() {
          return conn.welcomed;
        },
        waitReady: (s) => conn.waitReady(s),
        request: ((m: WorkerMessage, expect: never, timeout?: number) => {
          sent.push(m.type);
          return conn.request(m, expect, timeout);
        }) as Connection['request'],
      },
      log: { info: (m) => logs.push(m), warn: (m) => logs.push(`warning: ${m}`) },
      accepted: { step: null, sha256: null },
      remove: () => {},
      persist: () => {},
      lose: (reason) => logs.push(`lost: ${reason}`),
      putRetry: { maxAttempts: 4, backoff: new Backoff(10, 100) },
    });
    upload.offer({
      ck: {
        file: `checkpoints/${grant.leaseId}-10.safetensors`,
        step: 10,
        sha256: sha(bytes),
        bytes: bytes.byteLength,
        final: false,
        accepted: false,
      },
      bytes,
    });
    return { conn, grant, bytes, upload, sent, logs };
  };

  /** The expert's checkpoints (status, key, sha256) and the accepted ones' stored bytes' hash. */
  const stored = (expertId: string) =>
    query<{ id: string; status: string; key: string; sha256: string }>(
      'select id, status, key, sha256 from checkpoints where expert_id = ? order by rowid',
      expertId,
    ).map((row) => ({
      ...row,
      stored:
        row.status === 'accepted'
          ? sha(readFileSync(path.join(coord.dataDir, 'objects', 'objects', row.key)))
          : null,
    }));

  it('retries a reset, a 503 and a stall past the store’s answer; the object from the lost answer is committed', async () => {
    const t = await leased();
    proxy.reset(['reset', '503', 'stall']);
    expect(await t.upload.flush(), t.logs.join('\n')).toBe('accepted');
    // The third PUT reached the store (200) and lost its answer; the fourth finds the object
    // there (412), and the commit checks its size and sha256.
    expect(proxy.puts).toEqual([
      { fault: 'reset', store: null },
      { fault: '503', store: null },
      { fault: 'stall', store: 200 },
      { fault: 'pass', store: 412 },
    ]);
    expect(t.sent).toEqual(['checkpoint.begin', 'checkpoint.commit']);
    expect(t.logs.filter((l) => /attempt \d in/.test(l))).toHaveLength(3);
    const rows = stored(t.grant.expert.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      status: 'accepted',
      sha256: sha(t.bytes),
      stored: sha(t.bytes),
    });
  });

  it('a body cut halfway leaves nothing in the store; the retry stores it whole', async () => {
    const t = await leased();
    proxy.reset(['cut']);
    expect(await t.upload.flush(), t.logs.join('\n')).toBe('accepted');
    // The second PUT was created afresh (200, not 412): the half never became an object.
    expect(proxy.puts).toEqual([
      { fault: 'cut', store: null },
      { fault: 'pass', store: 200 },
    ]);
    expect(t.sent).toEqual(['checkpoint.begin', 'checkpoint.commit']);
    const rows = stored(t.grant.expert.id);
    expect(rows.map((r) => [r.status, r.stored])).toEqual([['accepted', sha(t.bytes)]]);
  });

  it('an upload closed under the worker (403 upload_closed) gets a fresh URL from another begin', async () => {
    const t = await leased();
    proxy.reset([]);
    // Before the first PUT reaches the store, a begin at the same step closes its upload.
    proxy.beforePut = async () => {
      await t.conn.request(
        {
          type: 'checkpoint.begin',
          leaseId: t.grant.leaseId,
          step: 10,
          bytes: t.bytes.byteLength,
          sha256: sha(t.bytes),
          final: false,
        },
        ['checkpoint.url'],
      );
    };
    expect(await t.upload.flush(), t.logs.join('\n')).toBe('accepted');
    expect(proxy.puts).toEqual([
      { fault: 'pass', store: 403 },
      { fault: 'pass', store: 200 },
    ]);
    expect(t.sent).toEqual(['checkpoint.begin', 'checkpoint.begin', 'checkpoint.commit']);
    expect(t.logs.some((l) => /upload_closed.*asking for a fresh one/.test(l))).toBe(true);
    // Three uploads at step 10: the worker's first and the interloper's were closed.
    const rows = stored(t.grant.expert.id);
    expect(rows.map((r) => r.status)).toEqual(['rejected', 'rejected', 'accepted']);
    expect(rows[2]!.stored).toBe(sha(t.bytes));
  });

  it('a store that keeps failing: the attempt gives up after its PUTs and nothing is committed', async () => {
    const t = await leased();
    proxy.reset(['503', 'reset', '503', 'reset', 'pass']);
    expect(await t.upload.flush(), t.logs.join('\n')).toBe('retry');
    expect(proxy.puts.map((p) => p.fault)).toEqual(['503', 'reset', '503', 'reset']);
    expect(t.sent).toEqual(['checkpoint.begin']);
    expect(t.upload.pending?.ck.step).toBe(10);
    expect(t.logs.at(-1)).toMatch(/^warning: upload of checkpoint step 10 failed: .*; will retry$/);
    expect(stored(t.grant.expert.id).map((r) => r.status)).toEqual(['uploading']);
    // The next attempt (a new begin: the old upload closes) gets it through.
    proxy.reset([]);
    expect(await t.upload.flush()).toBe('accepted');
    expect(t.sent).toEqual(['checkpoint.begin', 'checkpoint.begin', 'checkpoint.commit']);
    const rows = stored(t.grant.expert.id);
    expect(rows.map((r) => r.status)).toEqual(['rejected', 'accepted']);
    expect(rows[1]!.stored).toBe(sha(t.bytes));
  });
});
