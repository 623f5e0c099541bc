import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ControlServer,
  controlSocketPath,
  NoWorkerError,
  parseControlRequest,
  sendControl,
} from '../src/control-socket.js';
import type { WorkerStatus } from '../src/worker.js';

const status = (state: WorkerStatus['state']): WorkerStatus => ({
  pid: process.pid,
  name: 'w',
  coordinator: 'http://127.0.0.1:1',
  state,
  pausedSince: null,
  connected: false,
  lease: null,
  threads: 1,
  rssMb: 100,
  maxMemoryMb: null,
});

describe('the control socket', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('replaces a socket file a killed worker left, answers commands, and is gone once closed', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-control-'));
    const socket = controlSocketPath(dir);
    expect(socket).toBe(path.join(dir, 'control.sock'));
    writeFileSync(socket, 'left by a killed worker');
    const seen: string[] = [];
    const server = new ControlServer(socket, (command) => {
      seen.push(command);
      return status(command === 'pause' ? 'paused' : 'training');
    });
    await server.listen();
    await expect(sendControl(dir, 'pause')).resolves.toEqual({
      ok: true,
      status: status('paused'),
    });
    await expect(sendControl(dir, 'status')).resolves.toMatchObject({ ok: true });
    expect(seen).toEqual(['pause', 'status']);
    await server.close();
    expect(existsSync(socket)).toBe(false);
    await expect(sendControl(dir, 'status')).rejects.toThrow(NoWorkerError);
    await expect(sendControl(dir, 'status')).rejects.toThrow(
      `no worker is running with work dir ${dir}`,
    );
  });

  it('refuses anything but a known command with a stable code', () => {
    expect(parseControlRequest('{"command":"finish"}')).toBe('finish');
    expect(parseControlRequest('{')).toMatchObject({ ok: false, code: 'bad_request' });
    expect(parseControlRequest('null')).toMatchObject({ ok: false, code: 'bad_request' });
    expect(parseControlRequest('{"command":7}')).toMatchObject({ ok: false, code: 'bad_request' });
    expect(parseControlRequest('{"command":"__proto__"}')).toMatchObject({
      ok: false,
      code: 'unknown_command',
    });
  });
});
