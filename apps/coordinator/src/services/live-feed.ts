import type { ServerResponse } from 'node:http';
import type { LiveMessage } from '@archipelago/protocol';
import { and, eq, gte } from 'drizzle-orm';
import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../db/database.js';
import { experts, leases } from '../db/schema/index.js';
import { DomainError } from '../errors.js';
import { eventsAfter, lastEventId } from './events.js';

export interface LiveFeedOptions {
  /** How often the database is polled for new events and expert progress. */
  pollMs?: number;
  /** A `ping` this often keeps proxies from closing an idle stream. */
  pingMs?: number;
  /** Browsers reconnect after this long when a stream drops (the SSE `retry:` field). */
  retryMs?: number;
  /** Streams open at once (default 100), and per client (default 4). */
  maxStreams?: number;
  maxPerClient?: number;
}

interface Client {
  res: ServerResponse;
  /** Who opened it (request.ip), for the per-client cap. */
  key: string;
  /** Events up to this id are covered by what the client fetched after `hello`. */
  since: number;
}

/**
 * Rows are re-read this far behind the newest change seen: a writer stamps updatedAt before it
 * commits, so a change can become visible after a later-stamped one.
 */
const LOOKBACK_MS = 5000;

/** A client whose unsent output grows past this is too slow: it is dropped and reconnects. */
const MAX_BUFFERED_BYTES = 1024 * 1024;

/**
 * The dashboard's live stream (`GET /api/v1/live`, server-sent events). Every client gets
 * `hello` with the newest event id (it then fetches what it shows), then `event` for each new
 * event-log row and `progress` for each expert whose row changed (with `pausedSince` when its
 * volunteer paused it), and a `ping` now and then.
 *
 * Changes are found by polling SQLite, not by an in-memory bus, because job processors in other
 * processes write to the same database. One timer serves every client: it runs while at least
 * one is connected.
 */
export class LiveFeed {
  private readonly clients = new Set<Client>();
  private timer: NodeJS.Timeout | null = null;
  private cursor = 0;
  private progressSince = 0;
  /** updatedAt (ms) of each expert as last announced. */
  private readonly announced = new Map<string, number>();
  private ticks = 0;
  private closed = false;
  private readonly pollMs: number;
  private readonly pingEvery: number;
  private readonly retryMs: number;
  private readonly maxStreams: number;
  private readonly maxPerClient: number;

  constructor(
    private readonly db: Db,
    private readonly log: FastifyBaseLogger,
    options: LiveFeedOptions = {},
  ) {
    this.pollMs = options.pollMs ?? 1000;
    this.pingEvery = Math.max(1, Math.round((options.pingMs ?? 15_000) / this.pollMs));
    this.retryMs = options.retryMs ?? 2000;
    this.maxStreams = options.maxStreams ?? 100;
    this.maxPerClient = options.maxPerClient ?? 4;
  }

  get size(): number {
    return this.clients.size;
  }

  get running(): boolean {
    return this.timer !== null;
  }

  /**
   * Throws `too_many_streams` when as many streams are open as the feed, or client `key`, may
   * have: each stream holds a socket and a share of every poll.
   */
  admit(key: string): void {
    if (this.clients.size >= this.maxStreams)
      throw new DomainError(
        'too_many_streams',
        `${this.clients.size} live streams are open, the most this coordinator serves; try again later`,
      );
    let mine = 0;
    for (const c of this.clients) if (c.key === key) mine++;
    if (mine >= this.maxPerClient)
      throw new DomainError(
        'too_many_streams',
        `this client has ${mine} live streams open, the most one client may have; close one`,
      );
  }

  /**
   * Stream to `res` (headers not yet sent) until the client goes away or the feed closes; `key`
   * is the client (see {@link admit}, which the caller asks first).
   */
  add(res: ServerResponse, key = ''): void {
    if (this.closed) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('coordinator shutting down\n');
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // nginx and similar proxies buffer responses unless told not to.
      'x-accel-buffering': 'no',
    });
    const since = lastEventId(this.db);
    const client: Client = { res, key, since };
    res.write(`retry: ${this.retryMs}\n\n`);
    this.clients.add(client);
    res.on('close', () => this.remove(client));
    if (!this.timer) this.start(since);
    this.send(client, { type: 'hello', at: new Date().toISOString(), lastEventId: since });
  }

  /** End every stream and stop polling (the server is shutting down). */
  close(): void {
    this.closed = true;
    for (const c of [...this.clients]) c.res.end();
    this.clients.clear();
    this.stop();
  }

  private start(cursor: number): void {
    this.cursor = cursor;
    this.progressSince = Date.now();
    this.announced.clear();
    this.ticks = 0;
    this.timer = setInterval(() => this.tick(), this.pollMs);
    this.timer.unref();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private remove(client: Client): void {
    this.clients.delete(client);
    if (this.clients.size === 0) this.stop();
  }

  /** One poll: new events, changed experts, and now and then a ping. */
  tick(): void {
    try {
      for (const event of eventsAfter(this.db, this.cursor)) {
        this.cursor = event.id;
        for (const c of this.clients)
          if (event.id > c.since) this.send(c, { type: 'event', event });
      }
      // With the pause of its active lease (at most one: leases_one_active_per_expert).
      const changed = this.db
        .select({ e: experts, pausedAt: leases.pausedAt })
        .from(experts)
        .leftJoin(leases, and(eq(leases.expertId, experts.id), eq(leases.status, 'active')))
        .where(gte(experts.updatedAt, new Date(this.progressSince - LOOKBACK_MS)))
        .all();
      for (const { e, pausedAt } of changed) {
        const at = e.updatedAt.getTime();
        if ((this.announced.get(e.id) ?? 0) >= at) continue;
        this.announced.set(e.id, at);
        this.progressSince = Math.max(this.progressSince, at);
        this.broadcast({
          type: 'progress',
          runId: e.runId,
          expertId: e.id,
          cluster: e.cluster,
          status: e.status,
          step: e.step,
          targetSteps: e.targetSteps,
          loss: e.loss,
          imagesPerSec: e.imagesPerSec,
          pausedSince: pausedAt?.toISOString() ?? null,
          at: e.updatedAt.toISOString(),
        });
      }
    } catch (err) {
      this.log.error({ err }, 'live feed poll failed');
    }
    if (++this.ticks % this.pingEvery === 0)
      this.broadcast({ type: 'ping', at: new Date().toISOString() });
  }

  private broadcast(message: LiveMessage): void {
    for (const c of this.clients) this.send(c, message);
  }

  private send(client: Client, message: LiveMessage): void {
    const { res } = client;
    if (res.writableEnded || res.destroyed) return;
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      res.destroy();
      return;
    }
    res.write(`data: ${JSON.stringify(message)}\n\n`);
  }
}
