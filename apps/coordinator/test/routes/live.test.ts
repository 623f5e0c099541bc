import {
  type ClientRequest,
  createServer,
  get,
  type IncomingMessage,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LiveMessage } from '@archipelago/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastEventId } from '../../src/services/events.js';
import { LiveFeed } from '../../src/services/live-feed.js';
import { type RunFixture, runFixture } from './fixtures.js';

/**
 * A real SSE client on its own socket (node:http, no connection pool: closing it closes the
 * socket, as a browser's EventSource does), reading `data:` frames.
 */
class Stream {
  readonly messages: LiveMessage[] = [];
  raw = '';
  ended = false;
  private request: ClientRequest | null = null;
  private waiters: (() => void)[] = [];

  static open(url: string): Promise<Stream> {
    const s = new Stream();
    return new Promise((resolve, reject) => {
      s.request = get(url, { agent: false }, (res) => {
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
        void s.pump(res);
        resolve(s);
      });
      s.request.on('error', reject);
    });
  }

  private async pump(res: IncomingMessage): Promise<void> {
    res.setEncoding('utf8');
    let buffer = '';
    try {
      for await (const chunk of res) {
        const text = chunk as string;
        this.raw += text;
        buffer += text;
        let end = buffer.indexOf('\n\n');
        while (end >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (data) this.messages.push(JSON.parse(data) as LiveMessage);
          end = buffer.indexOf('\n\n');
        }
        for (const w of this.waiters.splice(0)) w();
      }
    } catch {
      // aborted
    }
    this.ended = true;
    for (const w of this.waiters.splice(0)) w();
  }

  /** Wait for a message matching `pred` (already received or arriving within the timeout). */
  async waitFor<T extends LiveMessage>(
    pred: (m: LiveMessage) => m is T,
    timeoutMs = 5000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(pred);
      if (found) return found;
      if (this.ended) throw new Error(`stream ended before the message; got ${this.raw}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no such message within ${timeoutMs} ms; got ${this.raw}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async untilEnded(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error('the stream is still open');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.request?.destroy();
  }
}

const isHello = (m: LiveMessage): m is Extract<LiveMessage, { type: 'hello' }> =>
  m.type === 'hello';
const isEvent =
  (type: string) =>
  (m: LiveMessage): m is Extract<LiveMessage, { type: 'event' }> =>
    m.type === 'event' && m.event.type === type;
const isProgress =
  (step: number) =>
  (m: LiveMessage): m is Extract<LiveMessage, { type: 'progress' }> =>
    m.type === 'progress' && m.step === step;

describe('live stream (server-sent events on a real socket)', () => {
  let f: RunFixture;
  let base: string;
  beforeAll(async () => {
    f = await runFixture();
    base = await f.t.app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => f.t.close());

  it('says hello with the newest event id, then sends new events and expert progress', async () => {
    const stream = await Stream.open(`${base}/api/v1/live`);
    try {
      const hello = await stream.waitFor(isHello);
      expect(stream.raw).toMatch(/^retry: \d+\n\n/);
      expect(hello.lastEventId).toBe(lastEventId(f.t.coordinator.db));

      const { leaseId, expertId } = f.lease();
      f.beat(leaseId, 12, 0.75);
      const granted = await stream.waitFor(isEvent('lease.granted'));
      expect(granted.event).toMatchObject({ runId: f.run.id, expertId, workerId: f.workerId });
      expect(granted.event.id).toBeGreaterThan(hello.lastEventId);
      await stream.waitFor(isEvent('expert.training'));
      const progress = await stream.waitFor(isProgress(12));
      expect(progress).toMatchObject({
        runId: f.run.id,
        expertId,
        status: 'training',
        targetSteps: 100,
        loss: 0.75,
        imagesPerSec: 50,
        pausedSince: null,
      });
      // Events arrive once each, in order.
      const ids = stream.messages.flatMap((m) => (m.type === 'event' ? [m.event.id] : []));
      expect(ids).toEqual([...new Set(ids)].sort((a, b) => a - b));

      // A second client sees only what happens after it connected.
      const late = await Stream.open(`${base}/api/v1/live`);
      try {
        const lateHello = await late.waitFor(isHello);
        expect(lateHello.lastEventId).toBeGreaterThanOrEqual(granted.event.id);
        f.beat(leaseId, 20, 0.5);
        await Promise.all([late.waitFor(isProgress(20)), stream.waitFor(isProgress(20))]);
        expect(late.messages.some(isEvent('lease.granted'))).toBe(false);
        // A paused lease: its expert's progress says since when.
        f.beat(leaseId, 21, 0.5, true);
        const paused = await late.waitFor(isProgress(21));
        expect(Date.parse(paused.pausedSince!)).toBeGreaterThan(Date.parse(granted.event.at));
      } finally {
        late.close();
      }
    } finally {
      stream.close();
    }
  });

  it('closes open streams when the server shuts down, without waiting for them', async () => {
    const stream = await Stream.open(`${base}/api/v1/live`);
    await stream.waitFor(isHello);
    const started = Date.now();
    await f.t.app.close();
    expect(Date.now() - started).toBeLessThan(2000);
    await stream.untilEnded();
    expect(stream.ended).toBe(true);
  });
});

describe('LiveFeed', () => {
  let f: RunFixture;
  let server: Server;
  let feed: LiveFeed;
  let url: string;
  beforeAll(async () => {
    f = await runFixture();
    feed = new LiveFeed(f.t.coordinator.db, f.t.app.log, { pollMs: 50, pingMs: 200 });
    server = createServer((_req, res) => feed.add(res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    feed.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await f.t.close();
  });

  it('polls with one timer while clients are connected, and pings them', async () => {
    expect(feed.running).toBe(false);
    const a = await Stream.open(url);
    const b = await Stream.open(url);
    await Promise.all([a.waitFor(isHello), b.waitFor(isHello)]);
    expect(feed.size).toBe(2);
    expect(feed.running).toBe(true);
    const isPing = (m: LiveMessage): m is Extract<LiveMessage, { type: 'ping' }> =>
      m.type === 'ping';
    await Promise.all([a.waitFor(isPing, 2000), b.waitFor(isPing, 2000)]);
    a.close();
    await until(() => feed.size === 1);
    expect(feed.running).toBe(true);
    b.close();
    await until(() => feed.size === 0);
    expect(feed.running).toBe(false);
  });

  it('refuses new streams once closed', async () => {
    feed.close();
    const res = await fetch(url);
    expect(res.status).toBe(503);
    await res.text();
  });
});

async function until(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
