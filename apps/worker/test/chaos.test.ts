/**
 * The chaos run, short (issue 13, point 4): 6 experts, 8 worker processes, the BullMQ
 * configuration, and every fault kind of ./chaos/driver.ts at least once (the coordinator killed
 * twice, Redis restarted once) in an order drawn from the seed. The faults wait on training's
 * progress, never on a clock; nothing here asserts timing. The longer run is bench/chaos.mjs.
 *
 * CHAOS_SEED, CHAOS_FAULTS (a number: that many faults, at least one of each kind, the rest
 * drawn from the seed), CHAOS_STEPS, CHAOS_TIMEOUT_MS and CHAOS_REPORT (a file for the JSON
 * lines) size it for that script; CHAOS_VERBOSE=1 shows progress on stderr.
 */
import { appendFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FAULT_KINDS, type FaultKind, runChaos } from './chaos/driver.js';

const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
const extra = Number(process.env.CHAOS_FAULTS ?? 0);
const steps = Number(process.env.CHAOS_STEPS ?? 50);
const reportFile = process.env.CHAOS_REPORT;
/** CHAOS_PLAN=none: no faults (a baseline run, which this test's assertions then fail). */
const noFaults = process.env.CHAOS_PLAN === 'none';

/** Every kind once, the coordinator twice, then `extra` more of the unbounded kinds; shuffled. */
function schedule(): FaultKind[] {
  const kinds: FaultKind[] = [...FAULT_KINDS, 'coordinator-kill'];
  const more = FAULT_KINDS.filter((k) => k !== 'coordinator-kill' && k !== 'redis-restart');
  let a = seed;
  const random = () => {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0;
    return a / 2 ** 32;
  };
  for (let i = kinds.length; i < extra; i++) kinds.push(more[Math.floor(random() * more.length)]!);
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
  }
  return kinds;
}

describe('the chaos run', () => {
  it(
    'every expert completes through worker, coordinator, Redis and store faults; no checkpoint lost, no double lease, the manifest verifies, at most one checkpoint interval lost per fault',
    async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'arch-chaos-'));
      const plan = noFaults ? [] : schedule();
      let passed = false;
      try {
        const report = await runChaos({
          seed,
          dir,
          experts: 6,
          workers: 8,
          stepsPerExpert: steps,
          checkpointInterval: 10,
          faults: plan,
          bullmq: true,
          onLine: (line) => {
            if (reportFile) appendFileSync(reportFile, `${line}\n`);
            if (process.env.CHAOS_VERBOSE) process.stderr.write(`${line}\n`);
          },
          onProgress: (line) => {
            if (process.env.CHAOS_VERBOSE) process.stderr.write(`${line}\n`);
          },
        });
        const why = report.lines.join('\n');
        // Every planned fault was injected (training did not end first).
        expect(
          report.faults.map((f) => f.kind),
          why,
        ).toEqual(plan);
        for (const kind of FAULT_KINDS) expect(plan).toContain(kind);
        expect(report.violations, why).toEqual({
          expertsNotDone: [],
          missingObjects: [],
          overlappingLeases: [],
          eventMismatches: [],
          lateAccepts: [],
          manifest: [],
          stepBound: [],
        });
        expect(report.summary).toMatchObject({ runStatus: 'published', experts: 6, ok: true });
        // Faults did interrupt leases (what the step bound is about) and the checks saw them.
        expect(report.losses.length, why).toBeGreaterThan(0);
        for (const l of report.losses) expect(l.lost).toBeLessThanOrEqual(l.bound);
        passed = true;
      } finally {
        // A failed run keeps its folder: logs/ has every process's output.
        if (passed) await rm(dir, { recursive: true, force: true });
        else process.stderr.write(`chaos run folder kept: ${dir}\n`);
      }
    },
    Number(process.env.CHAOS_TIMEOUT_MS ?? 15 * 60_000),
  );
});
