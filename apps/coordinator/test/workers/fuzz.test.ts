/**
 * Fuzzing the worker protocol and the REST bodies over real sockets (issue 12, point 8): random,
 * mutated and truncated frames and bodies, and valid frames in the wrong state, against a real
 * coordinator that holds accepted work. Every case must be answered with a stable error code (or
 * the harmless answer a valid frame gets), the coordinator must stay up, and its state must not
 * change: every table but the attacker's own connection bookkeeping is compared row by row, and
 * every accepted object still hashes to its recorded sha256.
 *
 * `ARCHIPELAGO_FUZZ_CASES` sets the number of cases (default 10,000 per CI run, fixed seed);
 * `ARCHIPELAGO_FUZZ_SEED` picks another seed for a longer opt-in run.
 */

import { createRng, type Rng } from '@archipelago/data';
import {
  type CoordinatorMessage,
  type LeaseGrant,
  type Welcome,
  WORKER_ERROR_CODES,
} from '@archipelago/protocol';
import { ne } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as schema from '../../src/db/schema/index.js';
import { ADMIN_KEY } from '../helpers.js';
import { type Harness, sha, startHarness } from './coordinator-harness.js';
import { hello, TestClient } from './socket-client.js';

const CASES = Number(process.env.ARCHIPELAGO_FUZZ_CASES ?? 10_000);
const SEED = Number(process.env.ARCHIPELAGO_FUZZ_SEED ?? 12);
/** Share of the cases spent on REST bodies and on first frames of fresh connections. */
const REST_SHARE = 0.25;
const FIRST_FRAME_SHARE = 0.02;

const KNOWN_CODES = new Set<string>(WORKER_ERROR_CODES);

/** Everything the coordinator has accepted, as comparable JSON (the attacker's rows excluded). */
function snapshot(h: Harness): string {
  const db = h.server.coordinator.db;
  const tables = {
    datasets: db.select().from(schema.datasets).all(),
    clusterings: db.select().from(schema.clusterings).all(),
    shards: db.select().from(schema.shards).all(),
    runs: db.select().from(schema.runs).all(),
    experts: db.select().from(schema.experts).all(),
    leases: db.select().from(schema.leases).all(),
    checkpoints: db.select().from(schema.checkpoints).all(),
    expertMetrics: db.select().from(schema.expertMetrics).all(),
    routers: db.select().from(schema.routers).all(),
    ensembles: db.select().from(schema.ensembles).all(),
    jobs: db.select().from(schema.jobs).all(),
    workerTokens: db.select().from(schema.workerTokens).all(),
    // Connections come and go (the attacker reconnects); what they did is in the other tables.
    events: db
      .select()
      .from(schema.events)
      .where(ne(schema.events.type, 'worker.connected'))
      .all()
      .filter((e) => !e.type.startsWith('worker.')),
  };
  return JSON.stringify(tables);
}

// --- values and mutations --------------------------------------------------------------------

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(xs.length)]!;

function randomString(rng: Rng): string {
  return pick(rng, [
    () => '',
    () => 'x'.repeat(1 + rng.int(300)),
    () => 'lease_'.concat('a'.repeat(rng.int(40))),
    () => '../../etc/passwd',
    () => '%2e%2e%2fapi',
    () => '\u0000\u202e\ud800',
    () => '__proto__',
    () => 'a'.repeat(64),
    () => String.fromCharCode(...Array.from({ length: rng.int(20) }, () => rng.int(0x10000))),
  ])();
}

function randomValue(rng: Rng, depth = 0): unknown {
  const kinds = depth > 3 ? 6 : 9;
  switch (rng.int(kinds)) {
    case 0:
      return null;
    case 1:
      return rng.next() < 0.5;
    case 2:
      return pick(rng, [0, -1, 1, 0.5, 2 ** 31, 2 ** 53 + 2, -(2 ** 63), 1e308, -1e-308]);
    case 3:
      return Math.floor(rng.next() * 2000) - 1000;
    case 4:
    case 5:
      return randomString(rng);
    case 6:
      return Array.from({ length: rng.int(4) }, () => randomValue(rng, depth + 1));
    case 7: {
      const o: Record<string, unknown> = {};
      for (let i = rng.int(4); i > 0; i--) o[randomString(rng)] = randomValue(rng, depth + 1);
      return o;
    }
    default:
      return { type: pick(rng, FRAME_TYPES), nested: randomValue(rng, depth + 1) };
  }
}

const FRAME_TYPES = [
  'hello',
  'lease.request',
  'heartbeat',
  'checkpoint.begin',
  'checkpoint.commit',
  'lease.complete',
  'lease.release',
  'error',
  'welcome',
  'lease.grant',
  'heartbeat.ack',
  'nope',
] as const;

/** Mutate a JSON object: change, drop or add a field, or change its type. */
function mutateObject(rng: Rng, frame: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(frame);
  const keys = Object.keys(out);
  for (let n = 1 + rng.int(3); n > 0; n--) {
    if (keys.length === 0) keys.push('type');
    switch (rng.int(5)) {
      case 0:
        out[pick(rng, keys)] = randomValue(rng);
        break;
      case 1:
        delete out[pick(rng, keys)];
        break;
      case 2:
        out[pick(rng, ['__proto__', 'constructor', 'extra', 'leaseId', 'workerId'])] =
          randomValue(rng);
        break;
      case 3:
        out.type = pick(rng, FRAME_TYPES);
        break;
      default: {
        const k = pick(rng, keys);
        const v = out[k];
        if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
          out[k] = mutateObject(rng, v as Record<string, unknown>);
        } else out[k] = randomValue(rng);
      }
    }
  }
  return out;
}

/**
 * Damage the text of a frame: truncate it, flip characters, add a key, nest deeply. With
 * `invalid`, only damage that can never leave a valid body of an object schema that refuses
 * unknown keys (no character flips, which may turn one valid value into another).
 */
function mutateText(rng: Rng, text: string, invalid = false): string {
  const kind = invalid ? pick(rng, [0, 2, 3, 4, 5]) : rng.int(6);
  switch (kind) {
    case 0:
      return text.slice(0, rng.int(text.length)); // a strict prefix of an object is not JSON
    case 1: {
      const chars = [...text];
      for (let n = 1 + rng.int(4); n > 0; n--) {
        chars[rng.int(chars.length)] = pick(rng, [
          '"',
          '{',
          '}',
          ',',
          ':',
          '\\',
          '0',
          ' ',
          '\u0000',
        ]);
      }
      return chars.join('');
    }
    case 2:
      // A duplicate key (JSON.parse keeps the last), or for a body an unknown one.
      return text.replace(
        /^\{/,
        `{"${invalid ? 'fuzz_type' : 'type'}":"${pick(rng, FRAME_TYPES)}",`,
      );
    case 3: {
      const depth = 1 + rng.int(20_000);
      return `${'['.repeat(depth)}${']'.repeat(rng.next() < 0.5 ? depth : rng.int(depth))}`;
    }
    case 4:
      return `${text}${text}`;
    default:
      return randomString(rng);
  }
}

// --- the test --------------------------------------------------------------------------------

describe('fuzzing the worker protocol and the REST bodies', () => {
  let h: Harness;
  let grants: LeaseGrant[];
  let victims: TestClient[];
  let attackerId: string | undefined;
  let attacker: TestClient | undefined;
  let before: string;
  let runId: string;
  let checkpointId: string;
  /** The attacker volunteers under a token of its own. */
  let attackerToken: string;

  beforeAll(async () => {
    // Leases that outlive the fuzzing, so nothing expires on its own while it runs.
    // Per-client limits high enough that the cases reach the code behind them (the limits have
    // their own tests).
    h = await startHarness({
      heartbeatMs: 1000,
      leaseTtlMs: 30 * 60_000,
      socketRateLimit: 100_000,
      authFailureLimit: 100_000,
      sampleRateLimit: 100_000,
    });
    const run = await h.makeRun(2, 'fm', 10, 5);
    runId = run.id;
    victims = [];
    grants = [];
    for (let i = 0; i < 2; i++) {
      const { c } = await h.connect('fm');
      const g = (await c.request({ type: 'lease.request' })) as LeaseGrant;
      expect(g.type).toBe('lease.grant');
      victims.push(c);
      grants.push(g);
    }
    // One accepted resume point the attacker must not be able to touch.
    const bytes = await h.checkpoint(grants[0]!, 5);
    const { url, put } = await h.upload(victims[0]!, grants[0]!.leaseId, 5, bytes);
    expect(put.status).toBe(200);
    checkpointId = url.checkpointId;
    const committed = await victims[0]!.request({
      type: 'checkpoint.commit',
      leaseId: grants[0]!.leaseId,
      checkpointId,
    });
    expect(committed.type).toBe('checkpoint.accepted');
    attackerToken = (await h.api('POST', '/api/v1/tokens', { name: 'attacker' })).body
      .token as string;
    before = snapshot(h);
  }, 120_000);

  afterAll(async () => {
    attacker?.close();
    for (const v of victims ?? []) v.close();
    await h?.close();
  });

  /** Frames a worker may send, aimed at the victims' leases or at nothing. */
  function template(rng: Rng): Record<string, unknown> {
    const g = pick(rng, grants);
    const leaseId = rng.next() < 0.7 ? g.leaseId : `lease_${'z'.repeat(12)}`;
    return pick(rng, [
      () => ({ type: 'heartbeat', leaseId, step: rng.int(12), loss: 0.1, imagesPerSec: 1 }),
      () => ({
        type: 'checkpoint.begin',
        leaseId,
        step: pick(rng, [5, 10, 7, 0, 1_000_000]),
        bytes: pick(rng, [64, 1, 2 ** 40]),
        sha256: sha(new Uint8Array([rng.int(256)])),
        final: rng.next() < 0.5,
      }),
      () => ({ type: 'checkpoint.commit', leaseId, checkpointId }),
      () => ({ type: 'lease.complete', leaseId, checkpointId }),
      () => ({ type: 'lease.release', leaseId, reason: 'fuzz' }),
      () => ({ type: 'error', code: 'internal_error', message: 'fuzz', fatal: false }),
      () => ({ ...hello(attackerToken, 'fm'), ...(attackerId ? { workerId: attackerId } : {}) }),
    ])();
  }

  function frameFor(rng: Rng): string | Buffer {
    const base = template(rng);
    switch (rng.int(6)) {
      case 0:
        return JSON.stringify(base); // a valid frame in the wrong state (not the lease's owner)
      case 1:
      case 2:
        return JSON.stringify(mutateObject(rng, base));
      case 3:
      case 4:
        return mutateText(rng, JSON.stringify(base));
      default:
        return rng.next() < 0.5
          ? Buffer.from(Array.from({ length: rng.int(64) }, () => rng.int(256)))
          : JSON.stringify(randomValue(rng));
    }
  }

  async function helloAttacker(): Promise<TestClient> {
    const c = await TestClient.connect(h.base);
    const w = (await c.request({
      ...hello(attackerToken, 'fm'),
      name: 'attacker',
      ...(attackerId ? { workerId: attackerId } : {}),
    })) as Welcome;
    expect(w.type, JSON.stringify(w)).toBe('welcome');
    attackerId = w.workerId;
    return c;
  }

  /**
   * Send one frame and collect what it is answered with: everything up to the answer to a
   * `lease.request` sent right after it (which, with nothing left to lease and no lease of its
   * own, is `lease.none`), or the close.
   */
  async function exchange(c: TestClient, frame: string | Buffer): Promise<CoordinatorMessage[]> {
    c.ws.send(frame);
    c.send({ type: 'lease.request' });
    const seen: CoordinatorMessage[] = [];
    const closed = c.closedWith.then(() => null);
    for (;;) {
      const m = await Promise.race([c.next(10_000), closed]);
      if (m === null) return seen;
      if (m.type === 'lease.none') return seen;
      seen.push(m);
    }
  }

  /** How often each answer was seen: the cases must reach every layer, not just the parser. */
  const seenCodes = new Map<string, number>();
  const tally = (code: string) => seenCodes.set(code, (seenCodes.get(code) ?? 0) + 1);

  function checkAnswers(answers: CoordinatorMessage[], frame: string | Buffer): void {
    for (const m of answers) {
      tally(m.type === 'error' ? `ws:${m.code}` : `ws:${m.type}`);
      const what = `${m.type} for ${String(frame).slice(0, 200)}`;
      // Nothing the attacker sends may grant it anything.
      expect(['error', 'lease.revoke'], what).toContain(m.type);
      if (m.type === 'error') {
        expect(KNOWN_CODES.has(m.code), what).toBe(true);
        expect(m.code, `${what}: ${m.message}`).not.toBe('internal_error');
      }
    }
  }

  it(
    `answers ${CASES} hostile worker frames and REST bodies with stable codes and changes nothing`,
    async () => {
      const rng = createRng(SEED);
      const restBodies = restCases(rng);
      let ws = 0;
      let rest = 0;
      let firstFrames = 0;
      for (let i = 0; i < CASES; i++) {
        const r = rng.next();
        if (r < REST_SHARE) {
          const res = await restBodies();
          expect(res.status, res.what).toBeGreaterThanOrEqual(400);
          expect(res.status, res.what).toBeLessThan(500);
          expect(typeof res.code, res.what).toBe('string');
          // A stable name of ours, never a framework's internal one (FST_ERR_*).
          expect(res.code, res.what).toMatch(/^(?!fst_)[a-z][a-z_]*$/);
          tally(`rest:${res.status}:${String(res.code)}`);
          rest++;
        } else if (r < REST_SHARE + FIRST_FRAME_SHARE) {
          // A fresh connection whose first frame is hostile.
          const c = await TestClient.connect(h.base);
          const frame = frameFor(rng);
          c.ws.send(frame);
          const first = await Promise.race([c.next(10_000), c.closedWith.then(() => null)]);
          if (first?.type === 'welcome') {
            // The mutation left a valid hello: a worker like any other, with nothing to lease.
            expect(await c.request({ type: 'lease.request' })).toMatchObject({
              type: 'lease.none',
            });
          } else if (first) checkAnswers([first], frame);
          c.close();
          await c.closedWith;
          firstFrames++;
        } else {
          if (!attacker || attacker.ws.readyState !== attacker.ws.OPEN)
            attacker = await helloAttacker();
          const frame = frameFor(rng);
          checkAnswers(await exchange(attacker, frame), frame);
          ws++;
        }
      }
      // Still up: a health check, a new worker, and the victims' own leases all still answer.
      expect((await fetch(`${h.base}/readyz`)).status).toBe(200);
      const fresh = await helloAttacker();
      expect(await fresh.request({ type: 'lease.request' })).toMatchObject({ type: 'lease.none' });
      fresh.close();
      // Nothing the coordinator had accepted changed.
      const after = snapshot(h);
      expect(after === before, 'state changed under fuzzing').toBe(true);
      if (after !== before) expect(JSON.parse(after)).toEqual(JSON.parse(before));
      // Every accepted object still hashes to its recorded sha256.
      const store = h.server.coordinator.store;
      const rows = h.server.coordinator.db
        .select()
        .from(schema.checkpoints)
        .all()
        .filter((r) => r.status === 'accepted');
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) {
        expect(sha(await store.getBytes(row.key)), row.key).toBe(row.sha256);
      }
      for (const [i, v] of victims.entries()) {
        const ack = await v.request({
          type: 'heartbeat',
          leaseId: grants[i]!.leaseId,
          step: 6,
          loss: 0.1,
          imagesPerSec: 1,
        });
        expect(ack.type, JSON.stringify(ack)).toBe('heartbeat.ack');
      }
      expect(ws + rest + firstFrames).toBe(CASES);
      if (process.env.ARCHIPELAGO_FUZZ_REPORT) console.log(Object.fromEntries(seenCodes));
      // The cases got past the parser into the schema checks, the state checks and ownership.
      for (const code of [
        'ws:bad_json',
        'ws:invalid_message',
        'ws:unknown_type',
        'ws:out_of_order',
        'ws:unknown_lease',
        'rest:400:validation_error',
        'rest:400:bad_json',
        'rest:401:unauthorized',
      ]) {
        expect(
          seenCodes.get(code) ?? 0,
          `${code} in ${JSON.stringify([...seenCodes])}`,
        ).toBeGreaterThan(0);
      }
      expect(runId).toBeTruthy();
    },
    Math.max(600_000, CASES * 5),
  );

  /** A generator of hostile REST requests: mutated bodies to every body-taking route. */
  function restCases(rng: Rng) {
    const routes: { method: string; path: string; admin: boolean; body: () => unknown }[] = [
      {
        method: 'POST',
        path: '/api/v1/datasets',
        admin: true,
        body: () => ({
          name: 'x',
          source: { kind: 'builtin', name: 'mnist' },
          resolution: 8,
          cluster: { k: 2 },
        }),
      },
      {
        method: 'POST',
        path: '/api/v1/runs',
        admin: true,
        body: () => ({ datasetId: 'ds_nope', experts: 2, objectives: 'fm' }),
      },
      { method: 'POST', path: '/api/v1/tokens', admin: true, body: () => ({ name: 'x' }) },
      {
        method: 'POST',
        path: '/api/v1/ensembles/ens_nope/samples',
        admin: false,
        body: () => ({ count: 4, seed: 0 }),
      },
    ];
    // Anonymous requests for an admin action on the real run, through path variants: refused
    // whatever the spelling (the access decision is made on the matched route).
    const cancelPaths = () =>
      pick(rng, [
        `/api/v1/runs/${runId}/cancel`,
        `/api/v1/runs/${runId}/cancel/`,
        `//api/v1/runs/${runId}/cancel`,
        `/api/v1//runs/${runId}/cancel`,
        `/%61pi/v1/runs/${runId}/cancel`,
        `/api/v1/runs/${encodeURIComponent(runId)}%2Fcancel`,
        `/api/v1/runs/${runId}/cancel?key=${ADMIN_KEY.slice(0, 4)}`,
        `/api/v1/runs/${runId}/./cancel`,
        `/api/v1/runs/x/../${runId}/cancel`,
      ]);
    return async () => {
      if (rng.next() < 0.1) {
        const target = cancelPaths();
        const res = await fetch(`${h.base}${target}`, { method: 'POST' });
        const body = (await res.json().catch(() => ({}))) as { error?: { code?: unknown } };
        return {
          status: res.status,
          code: body.error?.code,
          what: `POST ${target} (anonymous) -> ${res.status} ${JSON.stringify(body).slice(0, 300)}`,
        };
      }
      const route = pick(rng, routes);
      const anonymous = !route.admin || rng.next() < 0.2;
      const valid = route.body() as Record<string, unknown>;
      // Every body here is broken on purpose: an unknown field (the schemas refuse them), then
      // further mutation, or damaged text; an anonymous admin request is refused before that.
      const broken = { ...mutateObject(rng, valid), [`fuzz_${rng.int(1e6)}`]: randomValue(rng) };
      const text =
        rng.next() < 0.6 ? JSON.stringify(broken) : mutateText(rng, JSON.stringify(valid), true);
      const res = await fetch(`${h.base}${route.path}`, {
        method: route.method,
        headers: {
          ...(anonymous ? {} : { authorization: `Bearer ${ADMIN_KEY}` }),
          'content-type': pick(rng, ['application/json', 'application/json', 'text/plain']),
        },
        body: text,
      });
      const body = (await res.json().catch(() => ({}))) as { error?: { code?: unknown } };
      return {
        status: res.status,
        code: body.error?.code,
        what: `${route.method} ${route.path} ${text.slice(0, 200)} -> ${res.status} ${JSON.stringify(body).slice(0, 300)}`,
      };
    };
  }
});
