/**
 * The volunteer's install (issue 15, point 5): `scripts/pack-worker.mjs` packs the worker into one
 * tarball with its workspace packages bundled; `npm install -g` puts it into an empty temporary
 * prefix (the npm registry supplies tfjs, webgpu and the rest: this test needs the network, or a
 * warm npm cache); the installed `worker`, run from an empty directory with an empty HOME, trains
 * a lease against a real coordinator, which validates the expert and publishes the run; then it
 * starts once more on webgpu (Dawn's binding from the registry, Mesa's software adapter here).
 *
 * Needs the worker and its workspace packages built (`turbo run test` builds them first).
 */
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorProcess, freePort, Proc } from './harness.js';

const REPO = path.resolve(import.meta.dirname, '../../..');
const PACK_SCRIPT = path.join(REPO, 'scripts/pack-worker.mjs');
const WORKSPACE_PACKAGES = ['data', 'diffusion', 'models', 'protocol', 'random'];

/** This process's environment without what npm or a monorepo would lend a child process. */
function volunteerEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) || k === 'NODE_PATH' || k === 'NODE_OPTIONS' || k === 'INIT_CWD') continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** Runs a command to its end; its output, or a rejection with it. */
function exec(
  label: string,
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv },
  timeoutMs: number,
): Promise<string> {
  const proc = new Proc(
    label,
    spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  return proc.exit(timeoutMs).then(({ code, signal }) => {
    if (code !== 0) throw new Error(`${label} exited ${code ?? signal}:\n${proc.output}`);
    return proc.output;
  });
}

describe('the packed worker, installed with npm install -g', () => {
  let dir: string;
  let coord: CoordinatorProcess;
  let prefix: string;
  let installed: string;
  let nodeBin: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-install-'));
    prefix = path.join(dir, 'prefix');
    nodeBin = path.dirname(process.execPath);
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'data'));
    await coord.start();
  });

  afterAll(async () => {
    await coord?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('packs into one tarball, installs into an empty prefix and trains a lease there', async () => {
    const out = await exec(
      'pack',
      process.execPath,
      [PACK_SCRIPT, '--skip-build', '--out', path.join(dir, 'pack')],
      { cwd: REPO, env: volunteerEnv({}) },
      60_000,
    );
    const tarball = out.trim().split('\n').at(-1)!;
    expect(tarball).toMatch(/archipelago-worker-\d+\.\d+\.\d+\.tgz$/);
    expect(out).toMatch(/bundles @archipelago\/data, @archipelago\/diffusion/);

    // A volunteer's shell: an empty directory, no monorepo above it, npm from PATH.
    const empty = path.join(dir, 'empty');
    await mkdir(empty);
    const env = volunteerEnv({
      PATH: `${path.join(prefix, 'bin')}${path.delimiter}${nodeBin}${path.delimiter}${process.env.PATH ?? ''}`,
    });
    await exec(
      'npm install',
      'npm',
      [
        'install',
        '--global',
        '--prefix',
        prefix,
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        tarball,
      ],
      { cwd: empty, env },
      240_000,
    );

    installed = path.join(prefix, 'lib/node_modules/@archipelago/worker');
    // Real directories inside the prefix, not links into the workspace.
    expect(lstatSync(installed).isDirectory()).toBe(true);
    expect(realpathSync(installed).startsWith(REPO)).toBe(false);
    // What the tarball brought: built JavaScript and declarations, no sources, tests or maps.
    expect(readdirSync(installed)).toEqual(
      expect.arrayContaining(['dist', 'node_modules', 'package.json']),
    );
    const buildFiles = /^(src|test|bench|tsconfig.*|vitest\..*)$/;
    expect(readdirSync(installed).filter((f) => buildFiles.test(f))).toEqual([]);
    const shipped = readdirSync(installed, { recursive: true, encoding: 'utf8' }).filter(
      (f) =>
        !f.startsWith('node_modules') || f.startsWith(path.join('node_modules', '@archipelago')),
    );
    expect(shipped.filter((f) => /\.(map|ts)$/.test(f) && !f.endsWith('.d.ts'))).toEqual([]);
    expect(shipped.filter((f) => /(^|[\\/])(src|test)([\\/]|$)/.test(f))).toEqual([]);
    for (const name of WORKSPACE_PACKAGES) {
      const p = path.join(installed, 'node_modules/@archipelago', name);
      expect(lstatSync(p).isDirectory(), p).toBe(true);
      expect(existsSync(path.join(p, 'dist/index.js')), p).toBe(true);
      expect(readdirSync(p).sort()).toEqual(['dist', 'package.json']);
    }
    // The registry's packages, placed beside them.
    for (const dep of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-wasm', 'webgpu', 'ws']) {
      expect(existsSync(path.join(installed, 'node_modules', dep, 'package.json')), dep).toBe(true);
    }
    const version = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')).version;
    const workerBin = path.join(prefix, 'bin', 'worker');
    expect(
      (
        await exec('worker --version', workerBin, ['--version'], { cwd: empty, env }, 30_000)
      ).trim(),
    ).toBe(version);

    // The installed worker, from the empty directory with an empty HOME: its default work dir.
    const token = (await coord.token('volunteers')).token;
    const datasetId = await coord.importMnist(1);
    const run = await coord.createRun({
      datasetId,
      experts: 1,
      objectives: 'fm:1',
      stepsPerExpert: 12,
      checkpointInterval: 6,
      batchSize: 8,
      model: 'micro',
    });
    const home = path.join(dir, 'home');
    await mkdir(home);
    const worker = new Proc(
      'installed worker',
      spawn(
        workerBin,
        [
          '--coordinator',
          coord.url,
          '--token',
          token,
          '--backend',
          'wasm',
          '--name',
          'installed',
          '--exit-when-idle',
        ],
        {
          cwd: empty,
          env: { ...env, HOME: home, USERPROFILE: home },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      ),
    );
    expect((await worker.exit(180_000)).code, worker.output).toBe(0);
    expect(worker.output).toMatch(/backend wasm/);
    const done = await coord.published(run.id);
    expect(done.experts[0]!.step).toBe(12);

    // What it stored: its identity and lease state, the verified shard, its checkpoints; the
    // control socket is gone with the process; nothing was written to the directory it ran in.
    const workDir = path.join(home, '.archipelago', 'worker-cpu');
    const state = JSON.parse(readFileSync(path.join(workDir, 'state.json'), 'utf8'));
    expect(Object.keys(state.identities)).toHaveLength(1);
    expect(state.lease).toBeNull();
    expect(
      readdirSync(path.join(workDir, 'cache')).some((f) => /^[0-9a-f]{64}\.bin$/.test(f)),
    ).toBe(true);
    expect(existsSync(path.join(workDir, 'control.sock'))).toBe(false);

    // Dawn's prebuilt binding, fetched from the registry, loads from the prefix too: here, as in
    // webgpu.test.ts, on Mesa's software adapter. No work is left: it connects and exits 0.
    const onWebGpu = new Proc(
      'installed worker on webgpu',
      spawn(
        workerBin,
        ['--coordinator', coord.url, '--token', token, '--backend', 'webgpu', '--exit-when-idle'],
        { cwd: empty, env: { ...env, HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    );
    expect((await onWebGpu.exit(60_000)).code, onWebGpu.output).toBe(0);
    expect(onWebGpu.output).toMatch(/backend webgpu on adapter \d+ "[^"]+" \(Dawn /);
    expect(readdirSync(empty)).toEqual([]);
  }, 480_000);
});
