#!/usr/bin/env node
// The chaos run, longer (issue 13, point 4; README "Chaos run"): the driver of the short test
// (apps/worker/test/chaos/driver.ts, whose header lists the faults and the checks) with more
// faults and longer experts, through that same test file, so that the same assertions decide.
// Prints the report as JSON lines on stdout (one line per fault, then the summary) and the
// progress on stderr; exits with the test's status.
//
//   node apps/worker/bench/chaos.mjs [--seed N] [--faults N] [--steps N]
//
// --faults: how many faults (default 30; at least every kind once, the coordinator killed twice
// and Redis restarted once, the rest drawn from the seed among the worker and store faults);
// --steps: steps per expert (default 200, checkpoint every 10), long enough for the faults;
// --seed: the schedule's seed (default: random, recorded in the report). Needs the workspace
// built (npm run build).
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    faults: { type: 'string', default: '30' },
    steps: { type: 'string', default: '200' },
    help: { type: 'boolean' },
  },
});
const usage = 'usage: chaos.mjs [--seed N] [--faults N] [--steps N]';
if (values.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
const whole = (name, v, min) => {
  if (!/^\d+$/.test(v) || Number(v) < min) {
    process.stderr.write(`--${name} must be a whole number of at least ${min}\n${usage}\n`);
    process.exit(2);
  }
  return Number(v);
};
const seed =
  values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : whole('seed', values.seed, 0);
const faults = whole('faults', values.faults, 9);
const steps = whole('steps', values.steps, 20);

const tmp = await mkdtemp(path.join(os.tmpdir(), 'arch-chaos-bench-'));
const report = path.join(tmp, 'report.jsonl');
const workerDir = path.resolve(import.meta.dirname, '..');
const child = spawn('npx', ['vitest', 'run', 'test/chaos.test.ts'], {
  cwd: workerDir,
  stdio: ['ignore', 2, 'inherit'],
  env: {
    ...process.env,
    CHAOS_SEED: String(seed),
    CHAOS_FAULTS: String(faults),
    CHAOS_STEPS: String(steps),
    CHAOS_REPORT: report,
    CHAOS_VERBOSE: '1',
    // A generous bound on the whole run: about 2 s a step for the slowest expert, plus faults.
    CHAOS_TIMEOUT_MS: String((steps * 2 + faults * 30 + 300) * 1000),
  },
});
// vitest's own output goes to stderr with the progress; stdout gets the report only.
const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
const text = await readFile(report, 'utf8').catch(() => '');
process.stdout.write(text);
await rm(tmp, { recursive: true, force: true });
process.exit(code);
