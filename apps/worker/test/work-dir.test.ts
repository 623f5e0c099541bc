import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WorkDir, WorkDirInUseError } from '../src/work-dir.js';

describe('WorkDir', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'arch-workdir-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('defaults to one directory per device, so one process per GPU never collides', () => {
    expect(WorkDir.defaultPath(0, '/home/v')).toBe('/home/v/.archipelago/worker-gpu0');
    expect(WorkDir.defaultPath(1, '/home/v')).toBe('/home/v/.archipelago/worker-gpu1');
    expect(WorkDir.defaultPath(undefined, '/home/v')).toBe('/home/v/.archipelago/worker-cpu');
  });

  it('is locked by one live process at a time; a dead holder’s lock is taken over', async () => {
    const a = new WorkDir(path.join(root, 'w'));
    a.open();
    expect(readdirSync(a.root).sort()).toEqual(['cache', 'checkpoints', 'worker.lock']);
    // Another live process holds it.
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    await new Promise((r) => holder.once('spawn', r));
    a.close();
    writeFileSync(path.join(a.root, 'worker.lock'), `${holder.pid}\n`);
    const b = new WorkDir(a.root);
    expect(() => b.open()).toThrow(WorkDirInUseError);
    expect(() => b.open()).toThrow(/in use by process \d+; give each worker its own --work-dir/);
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    // The holder is gone (as after kill -9): its stale lock is taken over.
    b.open();
    expect(readFileSync(path.join(a.root, 'worker.lock'), 'utf8').trim()).toBe(String(process.pid));
    b.close();
    expect(existsSync(path.join(a.root, 'worker.lock'))).toBe(false);
  });

  it('writes its state atomically and reads back what it wrote; a torn file reads as empty', () => {
    const w = new WorkDir(root);
    w.open();
    expect(w.readState()).toEqual({ version: 1, identities: {}, lease: null });
    const state = {
      version: 1 as const,
      identities: { 'http://c:8080': { workerId: 'wk_000000000001' } },
      lease: null,
    };
    w.writeState(state);
    expect(w.readState()).toEqual(state);
    expect(readdirSync(root).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    writeFileSync(w.statePath, '{"version":1,"identi');
    expect(w.readState()).toEqual({ version: 1, identities: {}, lease: null });
    w.close();
  });
});
