#!/usr/bin/env node
// The worker heartbeat path under load: a real coordinator (this process, on a loopback port,
// its own SQLite in a temporary folder) with BENCH_HB_CONNECTIONS hello'd WebSocket connections,
// BENCH_HB_LEASED of which hold a lease and heartbeat as fast as their acks return for
// BENCH_HB_SECONDS; then, in the same run, a raw `ws` server that JSON-parses each message and
// answers it, over the same connections, as the reference. The clients run in a child process
// (this file with --load) so that they do not share the coordinator's event loop; both processes'
// CPU is reported (the machine's cores are shared between them). One JSON object per line on
// stdout; progress on stderr. Bounded: at most BENCH_HB_CONNECTIONS connections (10,000 at most
// per side unless raised), BENCH_HB_SECONDS of load per side, loopback only.
//
// BENCH_HB_SOAK_SECONDS > 0 adds a soak run: the same connections heartbeating at the workers'
// own rate (BENCH_HB_INTERVAL_MS each) for that long, with RSS sampled every second and every
// ack checked (no lease lost, none granted twice).
//
// As the load simulator (README "Benchmarks"): `npm run simulate -- --connections N --leased L
// --seconds S [--soak-seconds S] [--interval-ms MS] [--no-raw]`; each flag sets the environment
// knob of the same name, and --no-raw leaves out the raw ws reference.
import { fork, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import WebSocket, { WebSocketServer } from 'ws';
import { adminApi } from './admin-api.mjs';

/** Command-line flags and the environment knobs they set. */
const FLAGS = {
  connections: 'BENCH_HB_CONNECTIONS',
  leased: 'BENCH_HB_LEASED',
  seconds: 'BENCH_HB_SECONDS',
  'soak-seconds': 'BENCH_HB_SOAK_SECONDS',
  'interval-ms': 'BENCH_HB_INTERVAL_MS',
  'paced-ms': 'BENCH_HB_PACED_MS',
  'idle-poll-ms': 'BENCH_HB_IDLE_POLL_MS',
};
let noRaw = process.env.BENCH_HB_NO_RAW === '1';
if (process.argv[2] !== '--load') {
  const usage = `usage: heartbeats.mjs ${Object.keys(FLAGS)
    .map((f) => `[--${f} N]`)
    .join(' ')} [--no-raw]`;
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        ...Object.fromEntries(Object.keys(FLAGS).map((f) => [f, { type: 'string' }])),
        'no-raw': { type: 'boolean' },
        help: { type: 'boolean' },
      },
    }).values;
  } catch (err) {
    process.stderr.write(`${err.message}\n${usage}\n`);
    process.exit(2);
  }
  if (parsed.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  for (const [flag, env] of Object.entries(FLAGS)) {
    const v = parsed[flag];
    if (v === undefined) continue;
    // --paced-ms takes a list (one paced phase per interval); the others one number.
    const list = flag === 'paced-ms';
    if (!(list ? /^\d+(,\d+)*$/ : /^\d+$/).test(v)) {
      const what = list ? 'whole numbers separated by commas' : 'a whole number';
      process.stderr.write(`--${flag} wants ${what}, not ${v}\n${usage}\n`);
      process.exit(2);
    }
    process.env[env] = v;
  }
  if (parsed['no-raw']) noRaw = true;
}

const CONNECTIONS = Math.min(Number(process.env.BENCH_HB_CONNECTIONS ?? 10_000), 20_000);
const LEASED = Math.min(Number(process.env.BENCH_HB_LEASED ?? 1024), CONNECTIONS);
const SECONDS = Math.min(Number(process.env.BENCH_HB_SECONDS ?? 10), 600);
const SOAK_SECONDS = Math.min(Number(process.env.BENCH_HB_SOAK_SECONDS ?? 0), 3600);
const INTERVAL_MS = Math.max(50, Number(process.env.BENCH_HB_INTERVAL_MS ?? 1000));
/**
 * The paced phases: every leased socket heartbeats once per interval, for each interval of
 * PACED_MS in turn (a comma-separated list; 0 leaves them out). At the default 500 ms, 1,024
 * leases offer about 2,000 heartbeats/s, what 10,000 leased workers send at the default 5 s
 * heartbeat: the load the latency target is judged at. At 100 ms, about 10,000/s, five times
 * that. Latency is measured there because a closed loop (each socket sends its next heartbeat
 * the moment its ack returns) keeps every lease's heartbeat in flight: its latency is the queue,
 * leases / throughput by Little's law, whatever the server.
 */
const PACED_MS = String(process.env.BENCH_HB_PACED_MS ?? '500,100')
  .split(',')
  .map(Number)
  .filter((ms) => ms > 0);
/**
 * While each phase runs, every connection without a lease asks for one once per IDLE_POLL_MS
 * (0: they only say hello), as a real idle worker does at `lease.none`'s `retryAfterMs` (the
 * heartbeat interval, 5 s by default): 8,976 idle workers at 5 s add about 1,800 requests/s. The
 * runs' experts are all leased, so the coordinator answers `lease.none`.
 */
const IDLE_POLL_MS = Number(process.env.BENCH_HB_IDLE_POLL_MS ?? 5000);
const ADMIN_KEY = 'bench-admin-key-0123456789abcdef';
/** Experts per run: the most a run may have. */
const PER_RUN = 256;
/** Connections opened at once while connecting. */
const OPEN_AT_ONCE = 200;

const note = (line) => process.stderr.write(`${line}\n`);
const round = (x, digits = 3) => Number(x.toFixed(digits));
const quantile = (sorted, q) =>
  sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

if (process.argv[2] === '--load') await loadGenerator();
else await main();

// ---------------------------------------------------------------------------------------------
// The load generator (child process): connect, hello, lease, then heartbeat on command.

async function loadGenerator() {
  /** @type {{ url: string, token: string | null }} */
  let target;
  const sockets = [];
  /** Per leased socket: its lease and the step it reports next. */
  const leased = [];
  const send = (m) => process.send(m);
  const open = (url) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
  const next = (ws) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no answer within 30 s')), 30_000);
      ws.once('message', (data) => {
        clearTimeout(t);
        resolve(JSON.parse(String(data)));
      });
    });
  const request = (ws, frame) => {
    const answer = next(ws);
    ws.send(JSON.stringify(frame));
    return answer;
  };
  const hello = (i) => ({
    type: 'hello',
    protocols: [1],
    token: target.token ?? 'raw',
    name: `bench-${i}`,
    objective: 'any',
    backend: 'wasm',
    hardware: { cpus: 2, memoryBytes: 1e9, threads: 1 },
    version: '0.1.0',
  });

  async function connect(connections, leases) {
    for (let i = 0; i < connections; i += OPEN_AT_ONCE) {
      const batch = [];
      for (let j = i; j < Math.min(connections, i + OPEN_AT_ONCE); j++) {
        batch.push(
          (async () => {
            const ws = await open(target.url);
            const welcome = await request(ws, hello(j));
            if (welcome.type !== 'welcome') throw new Error(`hello: ${JSON.stringify(welcome)}`);
            sockets[j] = ws;
            if (j < leases) {
              const grant = await request(ws, { type: 'lease.request' });
              if (grant.type !== 'lease.grant') throw new Error(`lease: ${JSON.stringify(grant)}`);
              const l = {
                ws,
                leaseId: grant.leaseId,
                expertId: grant.expert?.id,
                step: (grant.resumeFrom?.step ?? 0) + 1,
              };
              // Training started: the first heartbeat moves the expert to training (a state
              // change, written at once); the measured ones renew a lease in training.
              const ack = await request(ws, {
                type: 'heartbeat',
                leaseId: l.leaseId,
                step: l.step,
                loss: 0.5,
                imagesPerSec: 100,
              });
              if (ack.type !== 'heartbeat.ack')
                throw new Error(`heartbeat: ${JSON.stringify(ack)}`);
              leased.push(l);
            }
          })(),
        );
      }
      await Promise.all(batch);
    }
  }

  /**
   * Heartbeat from every leased socket for `seconds`: as fast as acks return (intervalMs 0) or
   * once per intervalMs each. Latency is from send to ack; every answer is checked.
   */
  async function drive(seconds, intervalMs) {
    const latencies = [];
    let acks = 0;
    let refused = 0;
    const codes = {};
    const until = performance.now() + seconds * 1000;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const idle = IDLE_POLL_MS > 0 ? sockets.slice(leased.length) : [];
    const idleLatencies = [];
    const idleAnswers = {};
    // Each idle socket: ask, wait for the answer, ask again an interval after the last ask; at the
    // end of the phase one still waiting for an answer gets it first (no stale answer is left for
    // the next phase).
    const stops = [];
    const polling = idle.map(
      (ws) =>
        new Promise((resolve) => {
          let sentAt = 0;
          let inFlight = false;
          let stopped = false;
          let timer = null;
          const finish = () => {
            clearTimeout(timer);
            ws.off('message', onAnswer);
            resolve();
          };
          const ask = () => {
            if (stopped) return finish();
            inFlight = true;
            sentAt = performance.now();
            ws.send('{"type":"lease.request"}');
          };
          const onAnswer = (data) => {
            const done = performance.now();
            inFlight = false;
            idleLatencies.push(done - sentAt);
            const type = JSON.parse(String(data)).type;
            idleAnswers[type] = (idleAnswers[type] ?? 0) + 1;
            if (stopped) return finish();
            timer = setTimeout(ask, Math.max(0, IDLE_POLL_MS - (done - sentAt)));
          };
          ws.on('message', onAnswer);
          timer = setTimeout(ask, Math.random() * IDLE_POLL_MS);
          stops.push(() => {
            stopped = true;
            if (!inFlight) finish();
          });
        }),
    );
    await Promise.all(
      leased.map(
        (l) =>
          new Promise((resolve) => {
            let sentAt = 0;
            const beat = () => {
              if (performance.now() >= until) {
                l.ws.off('message', onAck);
                return resolve();
              }
              l.step++;
              sentAt = performance.now();
              l.ws.send(
                JSON.stringify({
                  type: 'heartbeat',
                  leaseId: l.leaseId,
                  step: l.step,
                  loss: 0.5,
                  imagesPerSec: 100,
                }),
              );
            };
            const onAck = (data) => {
              const m = JSON.parse(String(data));
              const done = performance.now();
              latencies.push(done - sentAt);
              if (m.type === 'heartbeat.ack' && m.leaseId === l.leaseId) acks++;
              else {
                refused++;
                codes[m.code ?? m.type] = (codes[m.code ?? m.type] ?? 0) + 1;
              }
              if (intervalMs > 0) setTimeout(beat, Math.max(0, intervalMs - (done - sentAt)));
              else beat();
            };
            l.ws.on('message', onAck);
            // Spread the first beats of a paced run over one interval.
            if (intervalMs > 0) setTimeout(beat, Math.random() * intervalMs);
            else beat();
          }),
      ),
    );
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    for (const stop of stops) stop();
    await Promise.all(polling);
    latencies.sort((a, b) => a - b);
    idleLatencies.sort((a, b) => a - b);
    return {
      acks,
      refused,
      codes,
      idle: {
        requests: idleLatencies.length,
        answers: idleAnswers,
        p99Ms: quantile(idleLatencies, 0.99),
      },
      seconds: wall,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      maxMs: latencies.at(-1) ?? null,
      loadCpu: (cpu.user + cpu.system) / 1e6 / wall,
    };
  }

  process.on('message', async (m) => {
    try {
      if (m.cmd === 'connect') {
        target = m;
        const t0 = performance.now();
        await connect(m.connections, m.leased);
        send({
          ok: true,
          connected: sockets.length,
          leased: leased.length,
          distinctExperts: new Set(leased.map((l) => l.expertId)).size,
          seconds: (performance.now() - t0) / 1000,
        });
      } else if (m.cmd === 'drive') {
        send({ ok: true, ...(await drive(m.seconds, m.intervalMs ?? 0)) });
      } else if (m.cmd === 'close') {
        for (const ws of sockets) ws?.terminate();
        send({ ok: true });
        process.exit(0);
      }
    } catch (err) {
      send({ ok: false, error: String(err?.stack ?? err) });
    }
  });
  send({ ready: true });
}

// ---------------------------------------------------------------------------------------------
// The orchestrator: this process hosts the coordinator, then the raw server.

function child() {
  const proc = fork(import.meta.filename, ['--load'], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const replies = [];
  const waiters = [];
  proc.on('message', (m) => {
    const w = waiters.shift();
    if (w) w(m);
    else replies.push(m);
  });
  const reply = () =>
    new Promise((resolve, reject) => {
      const got = (m) => (m.ok === false ? reject(new Error(m.error)) : resolve(m));
      const queued = replies.shift();
      if (queued) got(queued);
      else waiters.push(got);
    });
  return {
    ready: reply(),
    async ask(m) {
      proc.send(m);
      return reply();
    },
    proc,
  };
}

/** CPU (cores busy) and peak RSS of this process over an async step. */
async function measured(fn) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let rssPeak = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  }, 200);
  // Event-loop lateness: how late a 20 ms timer fires (monitorEventLoopDelay misreads a loop
  // saturated with socket reads).
  const late = [];
  let expected = performance.now() + 20;
  const ticker = setInterval(() => {
    const now = performance.now();
    late.push(Math.max(0, now - expected));
    expected = now + 20;
  }, 20);
  try {
    const result = await fn();
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return {
      result,
      serverCpu: (cpu.user + cpu.system) / 1e6 / wall,
      rssMB: process.memoryUsage().rss / 2 ** 20,
      rssPeakMB: Math.max(rssPeak, process.memoryUsage().rss) / 2 ** 20,
      loopDelayP99Ms:
        quantile(
          late.sort((a, b) => a - b),
          0.99,
        ) ?? 0,
    };
  } finally {
    clearInterval(sampler);
    clearInterval(ticker);
  }
}

async function imageFolder(root, perClass) {
  const size = 24;
  for (let c = 0; c < 2; c++) {
    const dir = path.join(root, `class-${c}`);
    await mkdir(dir, { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const pixels = Buffer.alloc(size * size * 3);
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const on = c === 0 ? x < size / 2 : y < size / 2;
          pixels.fill(
            on ? 200 + ((i * 7) % 50) : (i * 13) % 90,
            (y * size + x) * 3,
            (y * size + x) * 3 + 3,
          );
        }
      await sharp(pixels, { raw: { width: size, height: size, channels: 3 } })
        .png()
        .toFile(path.join(dir, `${i}.png`));
    }
  }
  return root;
}

async function setUpCoordinator(dir) {
  const { loadConfig } = await import('../dist/config.js');
  const { startServer } = await import('../dist/server.js');
  const server = await startServer(
    loadConfig({
      dataDir: path.join(dir, 'data'),
      port: 0,
      host: '127.0.0.1',
      logLevel: 'silent',
      adminKey: ADMIN_KEY,
      heartbeatMs: INTERVAL_MS,
      // Longer than connecting takes on a busy 2-core box (35 s measured for 10,000), so that the
      // leases warmed first are still alive when the load starts.
      leaseTtlMs: Math.max(120_000, INTERVAL_MS * 3),
      maxConnectionsPerToken: 100_000,
      maxLeasesPerToken: 100_000,
      socketRateLimit: 100_000,
    }),
    { handleSignals: false },
  );
  const api = adminApi(server.url, ADMIN_KEY);
  const token = (await api('POST', '/api/v1/tokens', { name: 'bench' })).token;
  // Enough experts for every leased connection: runs of 256 experts over one dataset.
  const k = Math.min(PER_RUN, Math.max(2, LEASED));
  const folder = await imageFolder(path.join(dir, 'images'), k);
  const imp = await api('POST', '/api/v1/datasets', {
    name: 'bench',
    source: { kind: 'folder', path: folder },
    resolution: 8,
    cluster: { k },
  });
  let job = imp.job;
  while (job.status !== 'succeeded') {
    if (job.status === 'failed') throw new Error(`import failed: ${JSON.stringify(job)}`);
    await new Promise((r) => setTimeout(r, 100));
    job = await api('GET', `/api/v1/jobs/${job.id}`);
  }
  for (let made = 0; made < LEASED; made += k) {
    await api('POST', '/api/v1/runs', {
      datasetId: job.result.datasetId,
      experts: k,
      objectives: 'fm',
      stepsPerExpert: 1_000_000,
      checkpointInterval: 1000,
    });
  }
  return { server, token };
}

function rawServer() {
  return new Promise((resolve) => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    wss.on('connection', (ws) => {
      ws.on('message', (data) => {
        const m = JSON.parse(String(data));
        const answer =
          m.type === 'hello'
            ? { type: 'welcome', protocol: 1, workerId: 'raw' }
            : m.type === 'lease.request'
              ? { type: 'lease.grant', leaseId: `lease-${Math.random()}` }
              : { type: 'heartbeat.ack', leaseId: m.leaseId, expiresAt: new Date().toISOString() };
        ws.send(JSON.stringify(answer));
      });
    });
    wss.on('listening', () => resolve(wss));
  });
}

async function side(name, url, token, common, soakCheck, probe = () => ({})) {
  const load = child();
  await load.ready;
  const c = await load.ask({
    cmd: 'connect',
    url,
    token,
    connections: CONNECTIONS,
    leased: LEASED,
  });
  note(`${name}: ${c.connected} connected, ${c.leased} leased in ${round(c.seconds, 1)} s`);
  /** One measured phase: `intervalMs` 0 is the closed loop, else each lease once per interval. */
  const phase = async (bench, intervalMs) => {
    probe(true);
    const m = await measured(() => load.ask({ cmd: 'drive', seconds: SECONDS, intervalMs }));
    const r = m.result;
    const record = {
      bench,
      connections: c.connected,
      leased: c.leased,
      ...(intervalMs > 0
        ? { intervalMs, offeredPerSec: round((c.leased * 1000) / intervalMs, 0) }
        : {}),
      seconds: round(r.seconds, 2),
      ...driveFigures(r, m, 2),
      serverRssMB: round(m.rssMB, 0),
      serverRssPeakMB: round(m.rssPeakMB, 0),
      loopDelayP99Ms: round(m.loopDelayP99Ms, 1),
      ...probe(),
      ...common,
    };
    process.stdout.write(`${JSON.stringify(record)}\n`);
    return record;
  };
  const record = await phase(`heartbeats.${name}`, 0);
  const paced = [];
  for (const ms of PACED_MS) paced.push(await phase(`heartbeats.${name}.paced`, ms));
  let soak;
  if (SOAK_SECONDS > 0 && soakCheck) soak = await soakRun(name, load, c, common, soakCheck, probe);
  await load.ask({ cmd: 'close' }).catch(() => {});
  return { record, paced, soak };
}

/** A drive's acks, refusals, rate, latency and both sides' CPU (to `cpuDigits`), for a record. */
function driveFigures(r, m, cpuDigits) {
  return {
    heartbeats: r.acks,
    refused: r.refused,
    ...(r.refused > 0 ? { refusedCodes: r.codes } : {}),
    heartbeatsPerSec: round(r.acks / r.seconds, 0),
    p50Ms: round(r.p50Ms, 2),
    p99Ms: round(r.p99Ms, 2),
    maxMs: round(r.maxMs, 2),
    serverCpu: round(m.serverCpu, cpuDigits),
    loadCpu: round(r.loadCpu, cpuDigits),
    ...(r.idle.requests > 0
      ? {
          idleRequestsPerSec: round(r.idle.requests / r.seconds, 0),
          idleP99Ms: round(r.idle.p99Ms, 2),
          idleAnswers: r.idle.answers,
        }
      : {}),
  };
}

/** The same connections at the workers' own pace for SOAK_SECONDS, RSS sampled every second. */
async function soakRun(name, load, c, common, soakCheck, probe) {
  probe(true);
  const rss = [];
  const sampler = setInterval(() => rss.push(process.memoryUsage().rss / 2 ** 20), 1000);
  const m = await measured(() =>
    load.ask({ cmd: 'drive', seconds: SOAK_SECONDS, intervalMs: INTERVAL_MS }),
  );
  clearInterval(sampler);
  const r = m.result;
  // Flat: RSS at the end within 10 % of RSS after the first minute (or the first fifth).
  const settled =
    rss[Math.min(rss.length - 1, Math.max(0, Math.min(60, Math.floor(rss.length / 5))))];
  const record = {
    bench: `heartbeats.${name}.soak`,
    connections: c.connected,
    leased: c.leased,
    intervalMs: INTERVAL_MS,
    seconds: round(r.seconds, 1),
    ...driveFigures(r, m, 3),
    loopDelayP99Ms: round(m.loopDelayP99Ms, 1),
    ...probe(),
    rssSettledMB: round(settled ?? 0, 0),
    rssEndMB: round(rss.at(-1) ?? 0, 0),
    rssGrowth: settled ? round((rss.at(-1) - settled) / settled, 3) : null,
    ...soakCheck(c),
    ...common,
  };
  process.stdout.write(`${JSON.stringify(record)}\n`);
  return record;
}

async function main() {
  const nofile = spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim();
  const common = { cores: os.cpus().length, node: process.version, nofile };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'arch-bench-hb-'));
  try {
    note(
      `heartbeats: ${CONNECTIONS} connections, ${LEASED} leased, ${SECONDS} s per side (ulimit -n ${nofile})`,
    );
    const { server, token } = await setUpCoordinator(dir);
    let coordinator;
    try {
      // After the soak: every lease granted at the start is still the one active lease of its
      // expert (none lost, none granted twice).
      const client = server.coordinator.db.$client;
      const soakCheck = (c) => ({
        distinctExperts: c.distinctExperts,
        activeLeases: client.prepare("select count(*) n from leases where status = 'active'").get()
          .n,
        expertsWithTwoActive: client
          .prepare(
            "select count(*) n from (select expert_id from leases where status = 'active' group by expert_id having count(*) > 1)",
          )
          .get().n,
      });
      // How long each of the coordinator's heartbeat writes blocks its loop (a whole flush, or
      // one chunk of a due flush when it writes them in chunks).
      const renewals = server.coordinator.hub.renewals;
      let flushes = [];
      for (const name of ['flush', 'flushIfDue']) {
        if (!renewals?.[name]) continue;
        const fn = renewals[name].bind(renewals);
        renewals[name] = (...args) => {
          const t0 = performance.now();
          const n = fn(...args);
          if (n > 0) flushes.push([performance.now() - t0, n]);
          return n;
        };
      }
      const probe = (reset) => {
        if (reset) flushes = [];
        if (!renewals?.flush || reset) return {};
        const ms = flushes.map((f) => f[0]).sort((a, b) => a - b);
        return {
          flushes: flushes.length,
          flushP50Ms: round(quantile(ms, 0.5) ?? 0, 2),
          flushMaxMs: round(ms.at(-1) ?? 0, 2),
          rowsPerFlush: round(
            flushes.reduce((n, f) => n + f[1], 0) / Math.max(1, flushes.length),
            0,
          ),
        };
      };
      coordinator = await side(
        'coordinator',
        `${server.url.replace(/^http/, 'ws')}/api/v1/workers/socket`,
        token,
        common,
        soakCheck,
        probe,
      );
    } finally {
      await server.close();
    }
    if (noRaw) return;
    const wss = await rawServer();
    let raw;
    try {
      raw = await side('raw_ws', `ws://127.0.0.1:${wss.address().port}`, null, common);
    } finally {
      for (const ws of wss.clients) ws.terminate();
      await new Promise((r) => wss.close(r));
    }
    process.stdout.write(
      `${JSON.stringify({
        bench: 'heartbeats.ratio',
        connections: coordinator.record.connections,
        leased: coordinator.record.leased,
        ratio: round(coordinator.record.heartbeatsPerSec / raw.record.heartbeatsPerSec, 3),
        coordinatorP99Ms: coordinator.record.p99Ms,
        rawP99Ms: raw.record.p99Ms,
        // Per paced phase: the offered rate and both sides' p99.
        paced: coordinator.paced.map((c, i) => ({
          intervalMs: c.intervalMs,
          offeredPerSec: c.offeredPerSec,
          coordinatorP99Ms: c.p99Ms,
          rawP99Ms: raw.paced[i]?.p99Ms ?? null,
        })),
        ...common,
      })}\n`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
