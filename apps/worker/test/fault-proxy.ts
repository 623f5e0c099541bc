/**
 * A fault-injecting node:http proxy in front of an object store (the coordinator's local store or
 * an s3rver), for the upload-fault and chaos tests. Two controls, both switchable at runtime:
 *
 * - `faults`: one-shot faults for the next PUTs, in order (then every PUT passes): `reset` the
 *   client's connection before anything reaches the store; answer `503` itself; forward it and
 *   `stall` (hold the store's answer, then close the client's connection without one); `cut`
 *   (forward half the body, then break both connections); `pass` it through.
 * - `mode`: what happens to every request while no one-shot fault applies: `pass`; `fail` (answer
 *   `status`, 500 or 503, without reaching the store); `hold` (keep the request waiting, body read,
 *   until the mode changes, then handle it by the new mode).
 *
 * `beforePut` runs once before the next PUT is handled; `onPut` before every PUT (with its path),
 * so a test can act on an upload in flight (kill its worker) while the proxy holds it.
 */
import {
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http';

export type PutFault = 'reset' | '503' | 'stall' | 'cut' | 'pass';
export type ProxyMode = { kind: 'pass' } | { kind: 'fail'; status: 500 | 503 } | { kind: 'hold' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class FaultProxy {
  /** The store's port on 127.0.0.1. */
  target = 0;
  /** Faults for the next PUTs, in order; then every PUT passes. */
  faults: PutFault[] = [];
  /** Every PUT's fault, and the store's status for those that reached it and were answered. */
  puts: { fault: PutFault; store: number | null }[] = [];
  /** Runs before the next PUT is handled (once). */
  beforePut: (() => Promise<void>) | null = null;
  /** Runs before every PUT is handled, with the request's path; may return one-shot faults. */
  onPut: ((url: string) => Promise<PutFault | undefined>) | null = null;
  /** Requests answered by each mode, and PUTs by each one-shot fault. */
  readonly counts = { pass: 0, fail: 0, held: 0, reset: 0, '503': 0, stall: 0, cut: 0 };
  #mode: ProxyMode = { kind: 'pass' };
  #modeChanged: (() => void)[] = [];
  private server: Server;

  constructor() {
    this.server = createServer((req, res) => {
      void this.handle(req, res).catch(() => req.socket.destroy());
    });
  }

  get mode(): ProxyMode {
    return this.#mode;
  }

  set mode(mode: ProxyMode) {
    this.#mode = mode;
    for (const wake of this.#modeChanged.splice(0)) wake();
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const { port } = this.server.address() as { port: number };
    return `http://127.0.0.1:${port}`;
  }

  close(): Promise<void> {
    this.mode = { kind: 'pass' };
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  reset(faults: PutFault[]): void {
    this.faults = faults;
    this.puts = [];
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const isPut = req.method === 'PUT';
    let fault: PutFault = isPut ? (this.faults.shift() ?? 'pass') : 'pass';
    if (isPut && this.onPut) fault = (await this.onPut(req.url ?? '')) ?? fault;
    const record = isPut ? { fault, store: null as number | null } : null;
    if (record) this.puts.push(record);
    if (record && this.beforePut) {
      const hook = this.beforePut;
      this.beforePut = null;
      await hook();
    }
    if (fault === 'pass') {
      if (this.#mode.kind === 'hold') this.counts.held++;
      while (this.#mode.kind === 'hold') {
        await new Promise<void>((r) => this.#modeChanged.push(r));
      }
      if (req.socket.destroyed) return;
      if (this.#mode.kind === 'fail') {
        this.counts.fail++;
        res.writeHead(this.#mode.status, { 'content-type': 'application/xml' });
        return res.end(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>injected fault</Message></Error>',
        );
      }
      this.counts.pass++;
    } else {
      this.counts[fault]++;
    }
    if (fault === 'reset') return req.socket.resetAndDestroy();
    if (fault === '503') {
      res.writeHead(503, { 'retry-after': '0', 'content-type': 'text/plain' });
      return res.end('store unavailable');
    }
    const upstream = request({
      host: '127.0.0.1',
      port: this.target,
      method: req.method,
      path: req.url,
      headers: req.headers,
    });
    // A store that is down: the client's connection breaks (a cut breaks it on purpose).
    upstream.on('error', () => {
      if (fault !== 'cut') req.socket.destroy();
    });
    if (fault === 'cut') {
      upstream.flushHeaders();
      upstream.write(body.subarray(0, body.length >> 1));
      // Let the half reach the store, then break both sides.
      await sleep(50);
      upstream.destroy();
      return req.socket.resetAndDestroy();
    }
    upstream.end(body);
    upstream.on('response', async (answer) => {
      const back: Buffer[] = [];
      for await (const c of answer) back.push(c as Buffer);
      if (record) record.store = answer.statusCode ?? null;
      if (fault === 'stall') {
        await sleep(100);
        return req.socket.destroy();
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      res.end(Buffer.concat(back));
    });
  }
}
