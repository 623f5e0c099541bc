/**
 * The chaos run (issue 13, point 4; README "Chaos run"). Cite this header for what a chaos run
 * injects and checks (the reliability docs may).
 *
 * Real parts only: an s3rver behind a fault-injecting proxy (../fault-proxy.ts) as the
 * coordinator's S3 store, its own redis-server (BullMQ configuration), a coordinator process
 * (`serve`), a run of `experts` experts on 8x8 MNIST and `workers` worker processes. While they
 * train, faults are injected on a seeded random schedule, each once training has moved on since
 * the last one (a new accepted checkpoint, or a checkpoint interval of steps over the experts),
 * never on a timer alone:
 *
 * - `worker-kill`: SIGKILL a worker holding a lease; a fresh process takes its place.
 * - `worker-stop`: SIGSTOP a worker holding a lease until the coordinator expired that lease, then
 *   SIGCONT (it must give the lease up, and nothing it sends after may be accepted).
 * - `upload-cut`: the next checkpoint PUT is cut halfway (both connections broken).
 * - `upload-kill`: the worker whose checkpoint PUT the proxy holds is SIGKILLed (replaced).
 * - `coordinator-kill`: SIGKILL the coordinator and start it again on the same port and data.
 * - `redis-restart`: SIGKILL redis-server (no persistence: its queues are lost) and restart it.
 * - `s3-fail`: every store request answered 500 or 503 by the proxy for a while.
 * - `s3-stall`: every store request held by the proxy for a while, then passed on.
 *
 * Then it waits for the run to be published and checks, from the coordinator's SQLite (read-only)
 * and the store itself (s3rver directly, not through the proxy):
 *
 * - every expert is done and the run published;
 * - every accepted checkpoint (and optimiser state) is in the store with its committed sha256;
 * - no two leases of one expert overlap in time (granted..ended), the events agree (one
 *   `lease.granted` per lease row; replayed in order, no grant while another lease of the expert
 *   is held), and no checkpoint was accepted from a lease after it ended;
 * - the published manifest verifies (`sample --manifest` with the coordinator's pinned key, and
 *   the coordinator's own `/verify`);
 * - steps lost: for every lease that ended other than completed, the steps its heartbeats had
 *   reported past the step the expert's next lease resumed from. Each must be at most one
 *   checkpoint interval per fault injected between that lease's last durable point (its grant, or
 *   the acceptance of the checkpoint it was resumed from, whichever is later) and its end; a lease
 *   that lost steps with no fault in that window is a violation too. The figure is the steps to
 *   redo as the coordinator sees them: a worker granted the same expert again continues from the
 *   steps it kept (it says so in its log), so fewer may be trained twice; steps trained after the
 *   last heartbeat the coordinator wrote are not seen (at most a heartbeat's worth).
 *
 * The report is JSON lines: one per fault (`{"type":"fault",...}`) and a summary line.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FaultProxy } from '../fault-proxy.js';
import {
  COORDINATOR_BIN,
  CoordinatorProcess,
  freePort,
  Proc,
  startS3,
  startWorker,
  until,
} from '../harness.js';

export const FAULT_KINDS = [
  'worker-kill',
  'worker-stop',
  'upload-cut',
  'upload-kill',
  'coordinator-kill',
  'redis-restart',
  's3-fail',
  's3-stall',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ChaosOptions {
  /** The schedule's seed (recorded in the report). */
  seed: number;
  /** A fresh folder for everything the run writes. */
  dir: string;
  experts?: number;
  workers?: number;
  stepsPerExpert?: number;
  checkpointInterval?: number;
  /** The faults to inject, in this order; or a number of faults drawn at random. */
  faults: FaultKind[] | number;
  /** With `faults` a number: at most this many of each kind (coordinator kills: 2, Redis: 1). */
  maxOfKind?: Partial<Record<FaultKind, number>>;
  /** The BullMQ configuration: the coordinator's jobs on its own Redis. */
  bullmq?: boolean;
  leaseTtlMs?: number;
  heartbeatMs?: number;
  /** Each report line as it is made (the fault lines come once the run is checked). */
  onLine?: (line: string) => void;
  /** Progress while the run goes: each fault as it is injected (not report lines). */
  onProgress?: (line: string) => void;
  /** How long to wait for the run to be published after the last fault. */
  publishTimeoutMs?: number;
}

export interface FaultRecord {
  type: 'fault';
  n: number;
  kind: FaultKind;
  /** ms since the run started training. */
  at: number;
  /** Epoch ms when it was injected (compared with the database's timestamps). */
  epochMs: number;
  /** ms the fault lasted (a stop, an outage, a restart). */
  durationMs: number;
  detail: Record<string, unknown>;
  /** Interrupted leases attributed to this fault and the steps they lost. */
  leasesInterrupted: number;
  stepsLost: number;
}

export interface LeaseLoss {
  leaseId: string;
  expertId: string;
  status: string;
  lastStep: number;
  resumedFrom: number;
  lost: number;
  faultsInWindow: number;
  bound: number;
}

export interface ChaosReport {
  seed: number;
  faults: FaultRecord[];
  losses: LeaseLoss[];
  summary: Record<string, unknown>;
  violations: {
    expertsNotDone: string[];
    missingObjects: string[];
    overlappingLeases: string[];
    eventMismatches: string[];
    lateAccepts: string[];
    manifest: string[];
    stepBound: string[];
  };
  lines: string[];
}

/** mulberry32: a small seeded PRNG, enough for a fault schedule. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

class RedisProcess {
  proc: Proc | null = null;
  constructor(readonly port: number) {}
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    const child = spawn(
      existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : 'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = new Proc('redis', child);
    await until(
      'redis to listen',
      async () => {
        if (!this.proc?.running) throw new Error(`redis exited:\n${this.proc?.output}`);
        return /Ready to accept connections/.test(this.proc.output);
      },
      30_000,
      50,
    );
  }
  async kill(): Promise<void> {
    this.proc?.kill('SIGKILL');
    await this.proc?.exited;
  }
}

/** Run the chaos schedule; never throws for a violated invariant (the caller asserts them). */
export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const experts = o.experts ?? 6;
  const nWorkers = o.workers ?? 8;
  const steps = o.stepsPerExpert ?? 60;
  const interval = o.checkpointInterval ?? 10;
  const leaseTtlMs = o.leaseTtlMs ?? 10_000;
  const heartbeatMs = o.heartbeatMs ?? 1000;
  const random = prng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const lines: string[] = [];
  const emit = (obj: Record<string, unknown>) => {
    const line = JSON.stringify(obj);
    lines.push(line);
    o.onLine?.(line);
  };

  await mkdir(o.dir, { recursive: true });
  const { s3, port: s3Port } = await startS3(path.join(o.dir, 's3'), 'chaos');
  const proxy = new FaultProxy();
  proxy.target = s3Port;
  const proxyUrl = await proxy.listen();
  const redis = o.bullmq ? new RedisProcess(await freePort()) : null;
  await redis?.start();
  const coord = new CoordinatorProcess(await freePort(), path.join(o.dir, 'data'));
  const coordEnv: Record<string, string> = {
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    ARCHIPELAGO_S3_BUCKET: 'chaos',
    ARCHIPELAGO_S3_PREFIX: 'run/',
    ARCHIPELAGO_S3_ENDPOINT: proxyUrl,
    ARCHIPELAGO_S3_FORCE_PATH_STYLE: 'true',
    ARCHIPELAGO_LOG_LEVEL: 'info',
    ARCHIPELAGO_LEASE_TTL_MS: String(leaseTtlMs),
    ARCHIPELAGO_HEARTBEAT_MS: String(heartbeatMs),
    ARCHIPELAGO_MAX_CONNECTIONS_PER_TOKEN: String(4 * nWorkers),
    ARCHIPELAGO_MAX_LEASES_PER_TOKEN: String(nWorkers),
    ...(redis ? { ARCHIPELAGO_REDIS_URL: redis.url, ARCHIPELAGO_REDIS_PREFIX: 'chaos' } : {}),
  };
  const dbPath = path.join(coord.dataDir, 'coordinator.sqlite');
  const query = <T>(sql: string, ...params: unknown[]): T[] => {
    const db = new Database(dbPath, { readonly: true, fileMustExist: true });
    try {
      return db.prepare(sql).all(...params) as T[];
    } finally {
      db.close();
    }
  };

  const procs = new Map<string, Proc>();
  const slots: string[] = [];
  let token = '';
  let generation = 0;
  const startSlot = (slot: number) => {
    const name = `w${slot}-g${generation++}`;
    const p = startWorker(name, {
      coordinator: coord.url,
      token,
      workDir: path.join(o.dir, 'work', name),
      exitWhenIdle: false,
      extra: ['--threads', '1'],
    });
    procs.set(name, p);
    slots[slot] = name;
  };
  const replace = (name: string) => {
    const slot = slots.indexOf(name);
    if (slot >= 0) startSlot(slot);
  };

  const faults: FaultRecord[] = [];
  /** Coordinator processes killed before the last one (for their logs). */
  const coordProcs: Proc[] = [];
  let t0 = Date.now();
  let runId = '';
  let expertIds: string[] = [];
  try {
    await coord.start(coordEnv);
    token = (await coord.token('chaos')).token;
    const datasetId = await coord.importMnist(experts);
    const run = await coord.createRun({
      datasetId,
      experts,
      objectives: `ddpm:${Math.floor(experts / 2)},fm:${experts - Math.floor(experts / 2)}`,
      stepsPerExpert: steps,
      checkpointInterval: interval,
      batchSize: 8,
      model: 'tiny',
    });
    runId = run.id;
    expertIds = run.experts.map((e) => e.id);
    t0 = Date.now();
    o.onProgress?.(JSON.stringify({ type: 'progress', at: 0, note: `run ${runId} created` }));
    for (let s = 0; s < nWorkers; s++) startSlot(s);

    const acceptedCount = () =>
      query<{ n: number }>(
        "select count(*) n from checkpoints c join experts e on e.id = c.expert_id where e.run_id = ? and c.status in ('accepted', 'superseded')",
        runId,
      )[0]!.n;
    /** Steps trained as the coordinator sees them (heartbeats), over the run's experts. */
    const progress = () =>
      query<{ n: number }>(
        'select coalesce(sum(step), 0) n from experts where run_id = ?',
        runId,
      )[0]!.n;
    const trainingLeft = () =>
      query<{ n: number }>(
        "select count(*) n from experts where run_id = ? and status in ('pending', 'leased', 'training')",
        runId,
      )[0]!.n;
    /** Active leases whose worker is one of ours and running. */
    const leased = () =>
      query<{ lease: string; expert: string; name: string; step: number }>(
        "select l.id lease, l.expert_id expert, w.name name, l.last_step step from leases l join workers w on w.id = l.worker_id where l.status = 'active'",
      ).filter((r) => procs.get(r.name)?.running);
    const leaseStatus = (id: string) =>
      query<{ status: string }>('select status from leases where id = ?', id)[0]?.status;

    // The schedule.
    const plan: FaultKind[] = [];
    if (Array.isArray(o.faults)) plan.push(...o.faults);
    else {
      const max: Record<FaultKind, number> = {
        'worker-kill': Number.POSITIVE_INFINITY,
        'worker-stop': Number.POSITIVE_INFINITY,
        'upload-cut': Number.POSITIVE_INFINITY,
        'upload-kill': Number.POSITIVE_INFINITY,
        'coordinator-kill': 2,
        'redis-restart': o.bullmq ? 1 : 0,
        's3-fail': Number.POSITIVE_INFINITY,
        's3-stall': Number.POSITIVE_INFINITY,
        ...o.maxOfKind,
      };
      const used = new Map<FaultKind, number>();
      while (plan.length < o.faults) {
        const kinds = FAULT_KINDS.filter((k) => (used.get(k) ?? 0) < max[k]);
        const k = pick(kinds);
        used.set(k, (used.get(k) ?? 0) + 1);
        plan.push(k);
      }
    }

    let seen = acceptedCount();
    let trained = progress();
    for (const kind of plan) {
      // Wait for training to move on since the last fault (a checkpoint accepted, or a checkpoint
      // interval's worth of steps over the experts), or for it to be over.
      const moved = await until(
        'training to move on',
        async () => {
          if (trainingLeft() === 0) return 'over';
          if (acceptedCount() <= seen && progress() < trained + interval) return null;
          if (kind.startsWith('worker') && leased().length === 0) return null;
          return 'moved';
        },
        300_000,
        200,
      );
      if (moved === 'over') {
        emit({ type: 'note', at: Date.now() - t0, note: `training over before fault ${kind}` });
        break;
      }
      const start = Date.now();
      const detail: Record<string, unknown> = {};
      switch (kind) {
        case 'worker-kill': {
          const target = pick(leased());
          Object.assign(detail, target);
          procs.get(target.name)!.kill('SIGKILL');
          await procs.get(target.name)!.exited;
          replace(target.name);
          break;
        }
        case 'worker-stop': {
          const target = pick(leased());
          Object.assign(detail, target);
          const p = procs.get(target.name)!;
          p.kill('SIGSTOP');
          await until(
            'the stopped worker’s lease to end',
            async () => leaseStatus(target.lease) !== 'active',
            120_000,
            100,
          );
          detail.leaseEnded = leaseStatus(target.lease);
          p.kill('SIGCONT');
          break;
        }
        case 'upload-cut': {
          const before = proxy.counts.cut;
          proxy.faults.push('cut');
          await until('a PUT to be cut', async () => proxy.counts.cut > before, 120_000, 50);
          break;
        }
        case 'upload-kill': {
          let fired = false;
          proxy.onPut = async (url) => {
            const ck = /uploads\/(ck_[0-9a-z]{12})/.exec(url)?.[1];
            if (fired || !ck) return undefined;
            const [row] = query<{ lease: string; name: string; step: number }>(
              'select c.lease_id lease, w.name name, c.step step from checkpoints c join leases l on l.id = c.lease_id join workers w on w.id = l.worker_id where c.id = ?',
              ck,
            );
            const p = row ? procs.get(row.name) : undefined;
            if (!p?.running) return undefined;
            fired = true;
            Object.assign(detail, row, { checkpoint: ck });
            p.kill('SIGKILL');
            await p.exited;
            replace(row!.name);
            return 'reset';
          };
          await until('a worker killed mid-upload', async () => fired, 120_000, 50);
          proxy.onPut = null;
          break;
        }
        case 'coordinator-kill': {
          if (coord.proc) coordProcs.push(coord.proc);
          await coord.kill();
          await coord.start(coordEnv);
          break;
        }
        case 'redis-restart': {
          await redis!.kill();
          await redis!.start();
          break;
        }
        case 's3-fail':
        case 's3-stall': {
          const counter = kind === 's3-fail' ? 'fail' : 'held';
          const before = proxy.counts[counter];
          const status = random() < 0.5 ? 500 : 503;
          proxy.mode = kind === 's3-fail' ? { kind: 'fail', status } : { kind: 'hold' };
          if (kind === 's3-fail') detail.status = status;
          // An outage of at least 2 s that some requests ran into (at most 20 s).
          const until2s = start + 2000;
          await until(
            'requests to run into the outage',
            async () => Date.now() > until2s && proxy.counts[counter] - before >= 2,
            20_000,
            100,
          ).catch(() => {});
          detail.requests = proxy.counts[counter] - before;
          proxy.mode = { kind: 'pass' };
          break;
        }
      }
      seen = acceptedCount();
      trained = progress();
      const rec: FaultRecord = {
        type: 'fault',
        n: faults.length + 1,
        kind,
        at: start - t0,
        epochMs: start,
        durationMs: Date.now() - start,
        detail,
        leasesInterrupted: 0,
        stepsLost: 0,
      };
      faults.push(rec);
      rec.detail.acceptedCheckpoints = seen;
      o.onProgress?.(
        JSON.stringify({
          ...rec,
          type: 'injected',
          leasesInterrupted: undefined,
          stepsLost: undefined,
        }),
      );
    }

    // Every expert done and the run published.
    await until(
      'the run to be published',
      async () => {
        const r = await coord.run(runId);
        if (r.status === 'failed') throw new Error(`run failed: ${r.error}`);
        return r.status === 'published' && r;
      },
      o.publishTimeoutMs ?? 300_000,
      250,
    ).catch((err) => {
      emit({ type: 'note', at: Date.now() - t0, note: (err as Error).message });
    });
    const trainedMs = Date.now() - t0;
    return await check({
      o,
      coord,
      query,
      s3Port,
      runId,
      expertIds,
      faults,
      interval,
      emit,
      lines,
      trainedMs,
      proxy,
    });
  } finally {
    for (const p of procs.values()) {
      p.kill('SIGCONT');
      p.kill('SIGKILL');
    }
    await Promise.all([...procs.values()].map((p) => p.exited));
    await coord.stop();
    await redis?.kill();
    // Every process's output, for a run that went wrong.
    await mkdir(path.join(o.dir, 'logs'), { recursive: true });
    if (coord.proc) coordProcs.push(coord.proc);
    const all = [...procs.values(), ...coordProcs, ...(redis?.proc ? [redis.proc] : [])];
    for (const [i, p] of all.entries()) {
      await writeFile(path.join(o.dir, 'logs', `${i}-${p.name}.log`), p.output);
    }
    await proxy.close();
    await s3.close();
  }
}

interface CheckArgs {
  o: ChaosOptions;
  coord: CoordinatorProcess;
  query: <T>(sql: string, ...params: unknown[]) => T[];
  s3Port: number;
  runId: string;
  expertIds: string[];
  faults: FaultRecord[];
  interval: number;
  emit: (obj: Record<string, unknown>) => void;
  lines: string[];
  trainedMs: number;
  proxy: FaultProxy;
}

interface LeaseRowDb {
  id: string;
  expert_id: string;
  status: string;
  start_step: number;
  last_step: number;
  granted_at: number;
  ended_at: number | null;
}

async function check(a: CheckArgs): Promise<ChaosReport> {
  const { coord, query, runId, expertIds, faults, interval } = a;
  const v: ChaosReport['violations'] = {
    expertsNotDone: [],
    missingObjects: [],
    overlappingLeases: [],
    eventMismatches: [],
    lateAccepts: [],
    manifest: [],
    stepBound: [],
  };
  const run = await coord.run(runId);
  if (run.status !== 'published') v.expertsNotDone.push(`run is ${run.status}`);
  for (const e of run.experts) {
    if (e.status !== 'done') v.expertsNotDone.push(`${e.id} is ${e.status} at step ${e.step}`);
  }

  // Accepted checkpoints (and optimiser states) in the store with their sha256, read from s3rver.
  const accepted = query<{
    id: string;
    expert_id: string;
    lease_id: string | null;
    step: number;
    key: string;
    sha256: string;
    optimizer_key: string | null;
    optimizer_sha256: string | null;
    decided_at: number | null;
  }>(
    `select c.* from checkpoints c join experts e on e.id = c.expert_id where e.run_id = ? and c.status = 'accepted'`,
    runId,
  );
  const direct = async (key: string) => {
    const res = await fetch(`http://127.0.0.1:${a.s3Port}/chaos/run/${key}`);
    if (!res.ok) throw new Error(`GET ${key}: ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  };
  for (const c of accepted) {
    for (const [key, want] of [
      [c.key, c.sha256],
      [c.optimizer_key, c.optimizer_sha256],
    ] as const) {
      if (!key) continue;
      try {
        const got = sha256(await direct(key));
        if (got !== want) v.missingObjects.push(`${key}: sha256 ${got}, committed ${want}`);
      } catch (err) {
        v.missingObjects.push(`${c.id} step ${c.step}: ${(err as Error).message}`);
      }
    }
  }

  // The lease history: no overlap per expert; the events agree; no accept after a lease ended.
  const leases = query<LeaseRowDb>(
    `select l.* from leases l join experts e on e.id = l.expert_id where e.run_id = ? order by l.granted_at, l.rowid`,
    runId,
  );
  const byExpert = new Map<string, LeaseRowDb[]>();
  for (const l of leases) byExpert.set(l.expert_id, [...(byExpert.get(l.expert_id) ?? []), l]);
  for (const [expert, ls] of byExpert) {
    for (let i = 0; i + 1 < ls.length; i++) {
      const end = ls[i]!.ended_at;
      if (end === null || end > ls[i + 1]!.granted_at) {
        v.overlappingLeases.push(
          `${expert}: ${ls[i]!.id} (${ls[i]!.status}, ended ${end}) overlaps ${ls[i + 1]!.id} (granted ${ls[i + 1]!.granted_at})`,
        );
      }
    }
  }
  const events = query<{ id: number; type: string; expert_id: string; data: string | null }>(
    `select id, type, expert_id, data from events where run_id = ? and expert_id is not null order by id`,
    runId,
  ).map((e) => ({ ...e, data: (e.data ? JSON.parse(e.data) : {}) as Record<string, unknown> }));
  const grantedIds = events.filter((e) => e.type === 'lease.granted').map((e) => e.data.leaseId);
  const rowIds = new Set(leases.map((l) => l.id));
  if (grantedIds.length !== rowIds.size || !grantedIds.every((id) => rowIds.has(id as string))) {
    v.eventMismatches.push(
      `${grantedIds.length} lease.granted events for ${rowIds.size} lease rows`,
    );
  }
  const statusOf = new Map(leases.map((l) => [l.id, l.status]));
  const holder = new Map<string, string | null>();
  for (const e of events) {
    const leaseId = e.data.leaseId as string | undefined;
    if (e.type === 'lease.granted') {
      const held = holder.get(e.expert_id);
      if (held) v.eventMismatches.push(`${e.expert_id}: ${leaseId} granted while ${held} held`);
      holder.set(e.expert_id, leaseId ?? null);
    } else if (['lease.released', 'lease.expired', 'lease.revoked'].includes(e.type)) {
      if (statusOf.get(leaseId!) !== e.type.slice('lease.'.length)) {
        v.eventMismatches.push(`${e.type} for ${leaseId}, whose row is ${statusOf.get(leaseId!)}`);
      }
      if (holder.get(e.expert_id) === leaseId) holder.set(e.expert_id, null);
    } else if (e.type === 'expert.validating') {
      // The final checkpoint was accepted: the lease is completed.
      holder.set(e.expert_id, null);
    }
  }
  const leaseById = new Map(leases.map((l) => [l.id, l]));
  for (const c of accepted) {
    const l = c.lease_id ? leaseById.get(c.lease_id) : undefined;
    if (l && l.ended_at !== null && c.decided_at !== null && c.decided_at > l.ended_at) {
      v.lateAccepts.push(`${c.id} step ${c.step} accepted after lease ${l.id} ended (${l.status})`);
    }
  }

  // The manifest: the offline consumer's verification with the coordinator's pinned key, and the
  // coordinator's own.
  if (run.status === 'published') {
    try {
      const keys = await coord.api<{ keys: { publicKey: string }[] }>('GET', '/api/v1/keys');
      const manifestUrl = `${coord.url}/api/v1/runs/${runId}/manifest.json`;
      const out = path.join(a.o.dir, 'sample.png');
      const sample = new Proc(
        'sample',
        spawn(
          process.execPath,
          [
            path.join(path.dirname(COORDINATOR_BIN), 'sample-bin.js'),
            '--manifest',
            manifestUrl,
            '--public-key',
            keys.body.keys[0]!.publicKey,
            '--count',
            '1',
            '--steps',
            '2',
            '--out',
            out,
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        ),
      );
      const { code } = await sample.exit(120_000);
      if (code !== 0) v.manifest.push(`sample --manifest exited ${code}: ${sample.output}`);
      const manifest = await fetch(manifestUrl);
      const id = /\/ensembles\/([^/]+)\/manifest\.json/.exec(
        manifest.headers.get('content-location') ?? '',
      )?.[1];
      const verify = await coord.api<{ ok: boolean }>('GET', `/api/v1/ensembles/${id}/verify`);
      if (!verify.body.ok) v.manifest.push(`/verify: ${JSON.stringify(verify.body)}`);
    } catch (err) {
      v.manifest.push((err as Error).message);
    }
  } else {
    v.manifest.push('no manifest: the run was not published');
  }

  // Steps lost per interrupted lease, and the bound.
  const acceptedAt = (expert: string, step: number) =>
    query<{ decided_at: number | null }>(
      "select decided_at from checkpoints where expert_id = ? and step = ? and status in ('accepted', 'superseded') order by decided_at limit 1",
      expert,
      step,
    )[0]?.decided_at ?? null;
  const losses: LeaseLoss[] = [];
  for (const [expert, ls] of byExpert) {
    ls.forEach((l, i) => {
      if (l.status === 'completed' || l.status === 'active') return;
      const next = ls[i + 1];
      const resumedFrom = next ? next.start_step : l.last_step;
      const lost = Math.max(0, l.last_step - resumedFrom);
      const from = Math.max(l.granted_at, acceptedAt(expert, l.start_step) ?? 0);
      const to = l.ended_at ?? Date.now();
      const inWindow = faults.filter((f) => f.epochMs >= from - 1000 && f.epochMs <= to);
      const loss: LeaseLoss = {
        leaseId: l.id,
        expertId: expert,
        status: l.status,
        lastStep: l.last_step,
        resumedFrom,
        lost,
        faultsInWindow: inWindow.length,
        bound: interval * inWindow.length,
      };
      losses.push(loss);
      if (lost > loss.bound) {
        v.stepBound.push(
          `${l.id} (${expert}, ${l.status}) lost ${lost} steps with ${inWindow.length} fault(s) in its window (bound ${loss.bound})`,
        );
      }
      const blame = inWindow.at(-1);
      if (blame) {
        blame.leasesInterrupted++;
        blame.stepsLost += lost;
      }
    });
  }

  for (const f of faults) a.emit({ ...f });
  const byKind: Record<string, number> = {};
  for (const f of faults) byKind[f.kind] = (byKind[f.kind] ?? 0) + 1;
  const summary = {
    type: 'summary',
    seed: a.o.seed,
    bullmq: a.o.bullmq ?? false,
    experts: expertIds.length,
    workers: a.o.workers ?? 8,
    stepsPerExpert: a.o.stepsPerExpert ?? 60,
    checkpointInterval: interval,
    runStatus: run.status,
    wallMs: a.trainedMs,
    faults: faults.length,
    faultsByKind: byKind,
    leases: leases.length,
    leasesInterrupted: losses.length,
    stepsLost: losses.reduce((s, l) => s + l.lost, 0),
    maxLostPerLease: Math.max(0, ...losses.map((l) => l.lost)),
    acceptedCheckpoints: accepted.length,
    proxy: a.proxy.counts,
    violations: Object.fromEntries(Object.entries(v).map(([k, xs]) => [k, xs.length])),
    ok: Object.values(v).every((xs) => xs.length === 0),
  };
  a.emit(summary);
  for (const [k, xs] of Object.entries(v)) for (const x of xs) a.emit({ type: 'violation', k, x });
  await writeFile(path.join(a.o.dir, 'report.jsonl'), `${a.lines.join('\n')}\n`);
  return { seed: a.o.seed, faults, losses, summary, violations: v, lines: a.lines };
}
