/**
 * The local control of a running worker: a Unix socket in its work dir (`control.sock`; on
 * Windows a named pipe derived from the work dir's path), through which `worker pause|resume|
 * finish|status --work-dir D` reach the process that holds that work dir. One request per
 * connection, one JSON line each way: `{"command":"pause"}` in, `{"ok":true,"status":{...}}` (or
 * `{"ok":false,"code":"...","error":"..."}`) out.
 *
 * Why a socket rather than a control file: the command gets an answer (the worker's state, or a
 * clear "no worker is running here"), nothing has to poll, and nothing stale is left to act on at
 * the next start: the socket file is removed by the process that holds the work dir's lock.
 * Only its owner can connect (the socket is made mode 0600). Signals do the same without the
 * socket: SIGUSR1 pauses, SIGUSR2 resumes.
 */
import { createHash } from 'node:crypto';
import { chmodSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import type { WorkerStatus } from './worker.js';

export const CONTROL_COMMANDS = ['pause', 'resume', 'finish', 'status'] as const;
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

export type ControlReply =
  | { ok: true; status: WorkerStatus }
  | { ok: false; code: 'bad_request' | 'unknown_command' | 'too_large'; error: string };

/** A request line longer than this is refused. */
const MAX_REQUEST_BYTES = 1024;

/** A client that has not sent its request within this long is dropped. */
const REQUEST_TIMEOUT_MS = 5000;

/** The control socket of the worker holding `workDir`. */
export function controlSocketPath(workDir: string): string {
  const root = path.resolve(workDir);
  if (process.platform === 'win32') {
    const id = createHash('sha256').update(root.toLowerCase()).digest('hex').slice(0, 16);
    return `\\\\.\\pipe\\archipelago-worker-${id}`;
  }
  return path.join(root, 'control.sock');
}

/** Decode one request line; the error reply for anything but a known command. */
export function parseControlRequest(line: string): ControlCommand | ControlReply {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { ok: false, code: 'bad_request', error: 'the request is not JSON' };
  }
  const command = (value as { command?: unknown } | null)?.command;
  if (typeof command !== 'string')
    return { ok: false, code: 'bad_request', error: 'the request has no "command" string' };
  if (!(CONTROL_COMMANDS as readonly string[]).includes(command))
    return {
      ok: false,
      code: 'unknown_command',
      error: `unknown command ${JSON.stringify(command.slice(0, 40))}; valid: ${CONTROL_COMMANDS.join(', ')}`,
    };
  return command as ControlCommand;
}

export class ControlServer {
  private server: Server | null = null;

  constructor(
    readonly socketPath: string,
    /** Carry out a command; the status after it. */
    private readonly handle: (command: ControlCommand) => WorkerStatus,
  ) {}

  /**
   * Listen. The caller holds the work dir's lock, so a socket file already there is a dead
   * worker's and is removed first.
   */
  async listen(): Promise<void> {
    if (process.platform !== 'win32') rmSync(this.socketPath, { force: true });
    const server = createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    if (process.platform !== 'win32') chmodSync(this.socketPath, 0o600);
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (process.platform !== 'win32') rmSync(this.socketPath, { force: true });
  }

  private serve(socket: Socket): void {
    let buffered = '';
    socket.setEncoding('utf8');
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    const answer = (reply: ControlReply) => socket.end(`${JSON.stringify(reply)}\n`);
    socket.on('data', (chunk: string) => {
      if (socket.writableEnded) return;
      buffered += chunk;
      const end = buffered.indexOf('\n');
      if (end < 0 && Buffer.byteLength(buffered) <= MAX_REQUEST_BYTES) return;
      if (end < 0 || end > MAX_REQUEST_BYTES)
        return answer({
          ok: false,
          code: 'too_large',
          error: `a request is one line of at most ${MAX_REQUEST_BYTES} bytes`,
        });
      const parsed = parseControlRequest(buffered.slice(0, end));
      answer(typeof parsed === 'string' ? { ok: true, status: this.handle(parsed) } : parsed);
    });
  }
}

/** No worker answers on the work dir's control socket. */
export class NoWorkerError extends Error {
  constructor(workDir: string, cause: string) {
    super(`no worker is running with work dir ${workDir} (${cause})`);
    this.name = 'NoWorkerError';
  }
}

/** Send one command to the worker holding `workDir`; its reply. */
export function sendControl(
  workDir: string,
  command: ControlCommand,
  timeoutMs = REQUEST_TIMEOUT_MS,
): Promise<ControlReply> {
  const socketPath = controlSocketPath(workDir);
  return new Promise((resolve, reject) => {
    let reply = '';
    const socket = createConnection(socketPath, () => {
      socket.write(`${JSON.stringify({ command })}\n`);
    });
    socket.setEncoding('utf8');
    socket.setTimeout(timeoutMs, () =>
      socket.destroy(new Error(`the worker did not answer within ${timeoutMs} ms`)),
    );
    socket.on('data', (chunk: string) => {
      reply += chunk;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
        reject(new NoWorkerError(path.resolve(workDir), `${err.code} on ${socketPath}`));
      else reject(err);
    });
    socket.on('end', () => {
      try {
        resolve(JSON.parse(reply) as ControlReply);
      } catch {
        reject(new Error(`the worker answered something that is not JSON: ${reply.slice(0, 200)}`));
      }
    });
  });
}
