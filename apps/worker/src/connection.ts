/**
 * The worker's one WebSocket to the coordinator (`ws(s)://<coordinator>/api/v1/workers/socket`):
 * hello -> welcome on every (re)connect, replies matched to requests and awaited with time
 * limits, and reconnection with jittered exponential backoff after any drop. A refusal that
 * retrying cannot fix (unknown or revoked token, no common protocol, an invalid hello) is reported
 * once through `onRefused` and the connection stays down.
 */
import {
  type CoordinatorMessage,
  type ErrorFrame,
  type Hello,
  parseFrame,
  type Welcome,
  type WorkerErrorCode,
  type WorkerErrorReason,
  type WorkerMessage,
} from '@archipelago/protocol';
import WebSocket from 'ws';
import { Backoff } from './backoff.js';

/** The coordinator said no for good; the worker exits with {@link EXIT.refused}. */
export class CoordinatorRefusedError extends Error {
  constructor(
    readonly code: WorkerErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'CoordinatorRefusedError';
  }
}

/** The coordinator answered a request with an error frame. */
export class RequestError extends Error {
  constructor(readonly frame: ErrorFrame) {
    super(frame.message);
    this.name = 'RequestError';
  }

  get code(): WorkerErrorCode {
    return this.frame.code;
  }

  /** The frame's finer stable reason, if it has one. */
  get reason(): WorkerErrorReason | undefined {
    return this.frame.reason;
  }
}

/** The connection dropped (or was never up) before the reply came; safe to retry later. */
export class DisconnectedError extends Error {
  constructor(message = 'not connected to the coordinator') {
    super(message);
    this.name = 'DisconnectedError';
  }
}

/** Error codes after which reconnecting cannot help. */
const REFUSALS: readonly WorkerErrorCode[] = [
  'unauthorized',
  'token_revoked',
  'unsupported_protocol',
];

type Reply<T extends CoordinatorMessage['type']> = Extract<CoordinatorMessage, { type: T }>;

interface Pending {
  sent: WorkerMessage['type'];
  expect: readonly CoordinatorMessage['type'][];
  resolve: (m: CoordinatorMessage) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export interface ConnectionOptions {
  /** The coordinator's base URL (http(s):// or ws(s)://). */
  coordinator: string;
  /** The hello to send on each connect (the worker id may have been learned meanwhile). */
  hello: () => Hello;
  onWelcome: (welcome: Welcome) => void;
  /** Frames that answer no request: lease.revoke, heartbeat.ack, error frames. */
  onMessage: (message: CoordinatorMessage) => void;
  onRefused: (err: CoordinatorRefusedError) => void;
  log: (message: string) => void;
  backoff?: Backoff;
  /** Time to wait for the welcome after connecting. Default 15 s. */
  helloTimeoutMs?: number;
  /** Default time limit of a request. Default 30 s. */
  requestTimeoutMs?: number;
  /** A WebSocket ping this often; no pong by the next one closes the socket. Default 15 s. */
  pingIntervalMs?: number;
}

/** `ws(s)://host[:port][/prefix]/api/v1/workers/socket` for a coordinator base URL. */
export function socketUrl(coordinator: string): string {
  const url = new URL(coordinator);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:')
    throw new TypeError(
      `the coordinator URL must start with http://, https://, ws:// or wss://, got ${coordinator}`,
    );
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/api/v1/workers/socket`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

export class Connection {
  private ws: WebSocket | null = null;
  private welcome: Welcome | null = null;
  private closed = false;
  private pending: Pending[] = [];
  private readyWaiters = new Set<() => void>();
  private retryTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private readonly backoff: Backoff;
  private readonly url: string;
  /** Set by a rate-limit refusal: the next reconnect waits at least this long. */
  private minDelayMs = 0;
  private failures = 0;
  private wasUp = false;
  /** A frame or pong arrived since the last ping. */
  private alive = true;

  constructor(private readonly options: ConnectionOptions) {
    this.url = socketUrl(options.coordinator);
    this.backoff = options.backoff ?? new Backoff(250, 15_000);
  }

  /** Connect (and keep reconnecting until {@link close}). */
  start(): void {
    if (!this.ws && !this.retryTimer && !this.closed) this.connect();
  }

  /** Welcomed on an open socket. */
  get ready(): boolean {
    return this.welcome !== null && this.ws?.readyState === WebSocket.OPEN;
  }

  get welcomed(): Welcome | null {
    return this.welcome;
  }

  /** Resolves once welcomed; rejects when `signal` aborts or the connection is closed for good. */
  waitReady(signal?: AbortSignal): Promise<void> {
    if (this.ready) return Promise.resolve();
    if (this.closed) return Promise.reject(new DisconnectedError('the connection is closed'));
    return new Promise((resolve, reject) => {
      const done = () => {
        this.readyWaiters.delete(done);
        signal?.removeEventListener('abort', onAbort);
        if (this.ready) resolve();
        else reject(new DisconnectedError('the connection is closed'));
      };
      const onAbort = () => {
        this.readyWaiters.delete(done);
        reject(signal?.reason ?? new Error('aborted'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.readyWaiters.add(done);
    });
  }

  /** Send a frame when welcomed; false when not connected. */
  send(message: WorkerMessage): boolean {
    if (!this.ready) return false;
    this.ws!.send(JSON.stringify(message));
    return true;
  }

  /**
   * Send a frame and await its reply: the first frame of an `expect` type, or an error frame in
   * reply to this frame's type (rejected with {@link RequestError}).
   * @throws {DisconnectedError} when not connected, or the connection drops or times out first
   */
  request<T extends CoordinatorMessage['type']>(
    message: WorkerMessage,
    expect: readonly T[],
    timeoutMs = this.options.requestTimeoutMs ?? 30_000,
  ): Promise<Reply<T>> {
    if (!this.ready) return Promise.reject(new DisconnectedError());
    return new Promise<Reply<T>>((resolve, reject) => {
      const entry: Pending = {
        sent: message.type,
        expect,
        resolve: (m) => resolve(m as Reply<T>),
        reject,
        timer: setTimeout(() => {
          this.pending = this.pending.filter((p) => p !== entry);
          reject(
            new DisconnectedError(
              `no reply to ${message.type} within ${timeoutMs} ms; reconnecting`,
            ),
          );
          // An unanswered request leaves the conversation in an unknown state: start afresh.
          this.ws?.terminate();
        }, timeoutMs),
      };
      this.pending.push(entry);
      this.ws!.send(JSON.stringify(message));
    });
  }

  /** Close for good (no reconnect); resolves once the socket is closed (or after 1 s). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.stopPing();
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 1000);
      ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(1000, 'worker stopping');
    });
  }

  private connect(): void {
    this.retryTimer = null;
    if (this.closed) return;
    const ws = new WebSocket(this.url, { handshakeTimeout: 10_000, maxPayload: 4 * 1024 * 1024 });
    this.ws = ws;
    let helloTimer: NodeJS.Timeout | null = null;
    let lastError = '';
    ws.on('open', () => {
      ws.send(JSON.stringify(this.options.hello()));
      helloTimer = setTimeout(() => {
        lastError = 'no welcome within the time limit';
        ws.terminate();
      }, this.options.helloTimeoutMs ?? 15_000);
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.ws !== ws) return;
      this.alive = true;
      if (isBinary) return this.reportBad('invalid_message', 'binary frames are not expected');
      const wasWelcomed = this.welcome !== null;
      this.onFrame(ws, data);
      if (!wasWelcomed && this.welcome && helloTimer) clearTimeout(helloTimer);
    });
    ws.on('pong', () => {
      this.alive = true;
    });
    ws.on('error', (err) => {
      lastError = err.message;
    });
    ws.on('close', (code, reason) => {
      if (helloTimer) clearTimeout(helloTimer);
      this.onClose(ws, code, String(reason) || lastError);
    });
  }

  private startPing(): void {
    this.stopPing();
    this.alive = true;
    this.pingTimer = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (!this.alive) {
        this.options.log('the coordinator stopped answering pings; reconnecting');
        ws.terminate();
        return;
      }
      this.alive = false;
      ws.ping();
    }, this.options.pingIntervalMs ?? 15_000);
    this.pingTimer.unref();
  }

  private stopPing(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  private onFrame(ws: WebSocket, data: Buffer): void {
    const parsed = parseFrame(data, 'coordinator', 4 * 1024 * 1024);
    if (!parsed.ok) {
      this.reportBad(parsed.code, parsed.message, parsed.inReplyTo);
      return;
    }
    const m = parsed.message;
    if (!this.welcome) {
      if (m.type === 'welcome') {
        this.welcome = m;
        this.backoff.reset();
        this.failures = 0;
        this.minDelayMs = 0;
        this.startPing();
        if (this.wasUp) this.options.log('reconnected to the coordinator');
        this.wasUp = true;
        this.options.onWelcome(m);
        for (const wake of [...this.readyWaiters]) wake();
        return;
      }
      if (m.type === 'error') {
        if (
          REFUSALS.includes(m.code) ||
          (m.code === 'invalid_message' && m.inReplyTo === 'hello')
        ) {
          this.refuse(ws, m);
          return;
        }
        if (m.code === 'rate_limited') this.minDelayMs = 60_000;
        this.options.log(`the coordinator refused the hello: ${m.message} (${m.code})`);
        return;
      }
      this.options.log(`ignoring ${m.type} before the welcome`);
      return;
    }
    const index = this.pending.findIndex(
      (p) => p.expect.includes(m.type) || (m.type === 'error' && m.inReplyTo === p.sent),
    );
    if (index >= 0) {
      const [p] = this.pending.splice(index, 1) as [Pending];
      clearTimeout(p.timer);
      if (m.type === 'error') p.reject(new RequestError(m));
      else p.resolve(m);
      return;
    }
    if (m.type === 'error' && m.fatal && REFUSALS.includes(m.code)) this.refuse(ws, m);
    else this.options.onMessage(m);
  }

  private refuse(ws: WebSocket, m: ErrorFrame): void {
    this.closed = true;
    ws.close(1000);
    this.options.onRefused(new CoordinatorRefusedError(m.code, m.message));
  }

  private reportBad(code: WorkerErrorCode, message: string, inReplyTo?: string): void {
    this.options.log(`ignoring a bad frame from the coordinator: ${message}`);
    if (this.ready)
      this.ws!.send(
        JSON.stringify({
          type: 'error',
          code,
          message,
          fatal: false,
          ...(inReplyTo ? { inReplyTo } : {}),
        } satisfies ErrorFrame),
      );
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (this.ws !== ws) return;
    const wasWelcomed = this.welcome !== null;
    this.welcome = null;
    this.ws = null;
    this.stopPing();
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(new DisconnectedError(`the connection closed before the reply to ${p.sent}`));
    }
    if (this.closed) {
      for (const wake of [...this.readyWaiters]) wake();
      return;
    }
    const delay = Math.max(this.minDelayMs, 100 + this.backoff.next());
    this.failures++;
    const why = reason ? `${reason}${code && code !== 1006 ? ` (${code})` : ''}` : `code ${code}`;
    if (wasWelcomed)
      this.options.log(`lost the connection to the coordinator: ${why}; reconnecting`);
    // Log the first failures, then every tenth: an unreachable coordinator must not flood the log.
    else if (this.failures <= 3 || this.failures % 10 === 0)
      this.options.log(
        `cannot reach the coordinator at ${this.url}: ${why}; retrying in ${(delay / 1000).toFixed(1)} s`,
      );
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
