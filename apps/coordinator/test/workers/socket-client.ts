import type { CoordinatorMessage } from '@archipelago/protocol';
import WebSocket, { type ClientOptions } from 'ws';

/** A bare protocol client on a real socket, for tests: send frames, await the next ones. */
export class TestClient {
  readonly ws: WebSocket;
  private readonly inbox: CoordinatorMessage[] = [];
  private waiting: ((m: CoordinatorMessage) => void) | null = null;
  readonly closedWith: Promise<{ code: number; reason: string }>;

  private constructor(url: string, options: ClientOptions = {}) {
    this.ws = new WebSocket(url, options);
    this.ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as CoordinatorMessage;
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(m);
      } else this.inbox.push(m);
    });
    this.closedWith = new Promise((resolve) =>
      this.ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })),
    );
  }

  /** Connect (ws options: e.g. `autoPong: false` plays a peer that stopped answering). */
  static async connect(baseUrl: string, options: ClientOptions = {}): Promise<TestClient> {
    const c = new TestClient(`${baseUrl.replace(/^http/, 'ws')}/api/v1/workers/socket`, options);
    await new Promise<void>((resolve, reject) => {
      c.ws.once('open', () => resolve());
      c.ws.once('error', reject);
    });
    return c;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  next(timeoutMs = 10_000): Promise<CoordinatorMessage> {
    const queued = this.inbox.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no frame within timeout')), timeoutMs);
      this.waiting = (m) => {
        clearTimeout(t);
        resolve(m);
      };
    });
  }

  async request(frame: unknown): Promise<CoordinatorMessage> {
    this.send(frame);
    return this.next();
  }

  close(): void {
    this.ws.close();
  }
}

export const hello = (
  token: string,
  objective: 'ddpm' | 'fm' | 'any',
  extra: Record<string, unknown> = {},
) => ({
  type: 'hello',
  protocols: [1],
  token,
  name: `test-${objective}`,
  objective,
  backend: 'wasm',
  hardware: { cpus: 2, memoryBytes: 1e9, threads: 1 },
  version: '0.1.0',
  ...extra,
});
