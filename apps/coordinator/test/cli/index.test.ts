import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeImageFolder } from '../helpers.js';

const BIN = path.resolve(import.meta.dirname, '../../dist/bin.js');
const run = promisify(execFile);

async function cli(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('coordinator CLI (real processes)', () => {
  let dir: string;
  let images: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-cli-'));
    images = await makeImageFolder(dir, 2, 6);
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('imports and clusters a folder, creates a run and shows it', async () => {
    const dataDir = path.join(dir, 'data');
    const imp = await cli([
      'dataset',
      'import',
      '--name',
      'two',
      '--folder',
      images,
      '--resolution',
      '12',
      '--clusters',
      '2',
      '--json',
      '--data-dir',
      dataDir,
    ]);
    expect(imp.code, imp.stderr).toBe(0);
    const ds = JSON.parse(imp.stdout);
    expect(ds).toMatchObject({
      name: 'two',
      count: 12,
      width: 12,
      classNames: ['class-0', 'class-1'],
    });
    expect(ds.clusterings[0].sizes).toHaveLength(2);

    const created = await cli([
      'run',
      'create',
      '--dataset',
      ds.id,
      '--experts',
      '2',
      '--objectives',
      'ddpm:1,fm:1',
      '--steps',
      '100',
      '--json',
      '--data-dir',
      dataDir,
    ]);
    expect(created.code, created.stderr).toBe(0);
    const r = JSON.parse(created.stdout);
    expect(r.status).toBe('training');
    expect(r.experts.map((e: { objective: string }) => e.objective)).toEqual(['ddpm', 'fm']);

    const shown = await cli(['run', 'show', r.id, '--data-dir', dataDir]);
    expect(shown.stdout).toContain(`run ${r.id}`);
    expect(shown.stdout).toMatch(/cluster +0 +ddpm +cosine +pending/);
    const list = await cli(['dataset', 'list', '--data-dir', dataDir]);
    expect(list.stdout).toContain(ds.id);

    const again = await cli([
      'run',
      'create',
      '--dataset',
      ds.id,
      '--experts',
      '3',
      '--steps',
      '10',
      '--data-dir',
      dataDir,
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/training, K=3/);
  });

  it('reports usage errors with exit code 2 and input errors with 1, naming the problem', async () => {
    const dataDir = path.join(dir, 'data-errors');
    const noSource = await cli(['dataset', 'import', '--name', 'x', '--data-dir', dataDir]);
    expect(noSource.code).toBe(2);
    expect(noSource.stderr).toContain('give --builtin <name> or --folder <dir>');
    const missing = await cli([
      'dataset',
      'import',
      '--name',
      'x',
      '--folder',
      path.join(dir, 'missing'),
      '--data-dir',
      dataDir,
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/missing is not a readable folder/);
    const badInt = await cli([
      'run',
      'create',
      '--dataset',
      'ds_x',
      '--experts',
      'four',
      '--steps',
      '1',
      '--data-dir',
      dataDir,
    ]);
    expect(badInt.code).not.toBe(0);
    expect(badInt.stderr).toContain('--experts must be an integer, got "four"');
    const badMix = await cli(['run', 'show', 'run_nothere00000', '--data-dir', dataDir]);
    expect(badMix.code).toBe(1);
    expect(badMix.stderr).toContain('run run_nothere00000 does not exist');
  });

  describe('serve', () => {
    let child: ChildProcess | undefined;
    afterAll(() => {
      child?.kill('SIGKILL');
    });

    async function start(dataDir: string) {
      const proc = spawn(
        process.execPath,
        [BIN, 'serve', '--port', '0', '--data-dir', dataDir, '--log-level', 'info'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child = proc;
      let out = '';
      proc.stdout!.on('data', (d) => {
        out += d;
      });
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no listening line in: ${out}`)), 20_000);
        proc.stdout!.on('data', () => {
          const m = /"url":"(http:\/\/[^"]+)".*coordinator listening/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
        proc.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      return { proc, url, output: () => out };
    }

    it('prints a generated admin key once, serves, and shuts down gracefully on SIGTERM', async () => {
      const dataDir = path.join(dir, 'serve');
      const first = await start(dataDir);
      const key = /Admin API key[^\n]*\n\s+(ak_\S+)/.exec(first.output())?.[1];
      expect(key).toBeDefined();
      expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
      const authed = await fetch(`${first.url}/api/v1/datasets`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'x', source: { kind: 'folder', path: '/nonexistent' } }),
      });
      expect(authed.status).toBe(400);
      const exit = new Promise<number | null>((r) => first.proc.once('exit', r));
      first.proc.kill('SIGTERM');
      expect(await exit).toBe(0);
      expect(first.output()).toContain('shutting down');

      const second = await start(dataDir);
      expect(second.output()).not.toContain('Admin API key');
      const denied = await fetch(`${second.url}/api/v1/runs`, {
        method: 'POST',
        headers: {
          authorization: 'Bearer ak_wrong_key_000000',
          'content-type': 'application/json',
        },
        body: '{}',
      });
      expect(denied.status).toBe(403);
      const stillKey = await fetch(`${second.url}/api/v1/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: '{}',
      });
      expect(stillKey.status).toBe(400);
      const exit2 = new Promise<number | null>((r) => second.proc.once('exit', r));
      second.proc.kill('SIGINT');
      expect(await exit2).toBe(0);
    });
  });
});
