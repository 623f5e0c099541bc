/**
 * The coordinator's own metrics, served at GET /metrics by plugins/metrics.ts (names and meanings
 * in docs/architecture.md, "Metrics").
 *
 * What the worker hub counts per frame is counted in plain numbers: `observe` and `inc` below
 * allocate nothing (prom-client's own `inc`/`observe`, even on a child bound to its labels, build
 * a label hash string and an object per call). They are read into the exposition only at scrape
 * time, as prom-client counters and histograms would be. Gauges that need the database (active
 * leases, the job queue) are read at scrape time too, with prepared statements.
 */
import { WORKER_MESSAGES, type WorkerMessage } from '@archipelago/protocol';
import { Gauge, Histogram, type Metric, type Registry } from 'prom-client';
import type { Db } from './db/database.js';
import { DomainError } from './errors.js';

/** Seconds from a frame's arrival to the end of its handling (its reply sent). */
export const FRAME_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;

/** Seconds a sampling request took, from the request to its samples (waiting included). */
export const SAMPLE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300] as const;

/** How long a scrape waits for Redis to count the sampling queue. */
const SAMPLING_DEPTH_TIMEOUT_MS = 1000;

export type FrameType = WorkerMessage['type'];
export const FRAME_TYPES = Object.keys(WORKER_MESSAGES) as FrameType[];

type Value = { labels: Record<string, string | number>; value: number; metricName?: string };

/**
 * What prom-client's Registry reads of a metric (`name`, `help`, `type`, `get()`); registered
 * with `registerMetric` like its own.
 */
abstract class Exposed {
  readonly aggregator = 'sum' as const;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
  ) {}
  protected abstract values(): Value[];
  async get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.values(),
    };
  }
  /** Registry.resetMetrics calls this; the coordinator never does. */
  abstract reset(): void;
}

/** A counter over a fixed set of values of one label; `inc` allocates nothing. */
export class FixedCounter<V extends string> extends Exposed {
  private readonly counts: Record<string, number> = {};
  constructor(
    name: string,
    help: string,
    private readonly label: string,
    private readonly keys: readonly V[],
  ) {
    super(name, help, 'counter');
    this.reset();
  }
  inc(key: V, by = 1): void {
    this.counts[key] += by;
  }
  value(key: V): number {
    return this.counts[key] ?? 0;
  }
  reset(): void {
    for (const k of this.keys) this.counts[k] = 0;
  }
  protected values(): Value[] {
    return this.keys.map((k) => ({ labels: { [this.label]: k }, value: this.counts[k] ?? 0 }));
  }
}

/** One label value's histogram: per-bucket counts (the last one past every bound), sum, count. */
class Series {
  readonly buckets: Float64Array;
  sum = 0;
  count = 0;
  constructor(bounds: number) {
    this.buckets = new Float64Array(bounds + 1);
  }
}

/** A histogram over a fixed set of values of one label; `observe` allocates nothing. */
export class FixedHistogram<V extends string> extends Exposed {
  private readonly series: Record<string, Series> = {};
  constructor(
    name: string,
    help: string,
    private readonly label: string,
    private readonly keys: readonly V[],
    private readonly bounds: readonly number[],
  ) {
    super(name, help, 'histogram');
    this.reset();
  }
  observe(key: V, seconds: number): void {
    const s = this.series[key]!;
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    s.buckets[i]!++;
    s.sum += seconds;
    s.count++;
  }
  count(key: V): number {
    return this.series[key]?.count ?? 0;
  }
  reset(): void {
    for (const k of this.keys) this.series[k] = new Series(this.bounds.length);
  }
  protected values(): Value[] {
    const out: Value[] = [];
    for (const k of this.keys) {
      const s = this.series[k]!;
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += s.buckets[i]!;
        out.push({
          labels: { [this.label]: k, le },
          value: acc,
          metricName: `${this.name}_bucket`,
        });
      });
      out.push(
        {
          labels: { [this.label]: k, le: '+Inf' },
          value: s.count,
          metricName: `${this.name}_bucket`,
        },
        { labels: { [this.label]: k }, value: s.sum, metricName: `${this.name}_sum` },
        { labels: { [this.label]: k }, value: s.count, metricName: `${this.name}_count` },
      );
    }
    return out;
  }
}

/** What the worker hub counts (workers/worker-hub.ts), in this process since it started. */
export class HubMetrics {
  readonly frames = new FixedHistogram<FrameType>(
    'archipelago_worker_frame_seconds',
    'Worker frames handled, by type: seconds from arrival to the end of handling (reply sent)',
    'type',
    FRAME_TYPES,
    FRAME_BUCKETS,
  );
  /** Frames refused before they had a type: binary, not JSON, unknown type, too large. */
  readonly invalidFrames = new FixedCounter(
    'archipelago_worker_invalid_frames_total',
    'Worker frames refused unparsed (binary, malformed, unknown type, too large)',
    'reason',
    ['invalid', 'too_large'] as const,
  );
  readonly leaseGrants = new FixedCounter(
    'archipelago_lease_grants_total',
    'Leases granted: first (the expert was never leased) or regrant (it was, and went back to the pool)',
    'kind',
    ['first', 'regrant'] as const,
  );
  readonly leaseEnds = new FixedCounter(
    'archipelago_lease_ends_total',
    'Leases ended by the hub: expired (no heartbeat within the TTL), released by the worker, completed by an accepted final checkpoint',
    'how',
    ['expired', 'released', 'completed'] as const,
  );
  readonly checkpointVerdicts = new FixedCounter(
    'archipelago_checkpoint_verdicts_total',
    'Checkpoint commits by verdict: accepted, rejected (missing, wrong size, header or hash), stale (a later step was accepted meanwhile)',
    'verdict',
    ['accepted', 'rejected', 'stale'] as const,
  );
  readonly checkpointBytes = new FixedCounter(
    'archipelago_checkpoint_bytes_total',
    'Bytes of accepted checkpoints: the weights and their optimiser states',
    'object',
    ['weights', 'optimizer'] as const,
  );

  /** Count a commit's verdict; an accepted one's bytes, and its lease when it completed it. */
  countCommit(
    r:
      | {
          accepted: true;
          checkpoint: { bytes: number; optimizerBytes: number | null };
          expertDone: boolean;
        }
      | { accepted: false },
  ): void {
    if (!r.accepted) {
      this.checkpointVerdicts.inc('rejected');
      return;
    }
    this.checkpointVerdicts.inc('accepted');
    this.checkpointBytes.inc('weights', r.checkpoint.bytes);
    if (r.checkpoint.optimizerBytes)
      this.checkpointBytes.inc('optimizer', r.checkpoint.optimizerBytes);
    if (r.expertDone) this.leaseEnds.inc('completed');
  }

  /** A commit that threw: a stale step is a verdict too (the upload was rejected). Rethrows. */
  commitFailed(err: unknown): never {
    if (err instanceof DomainError && err.code === 'stale_checkpoint_step')
      this.checkpointVerdicts.inc('stale');
    throw err;
  }

  /** Every metric above, to register. */
  all(): Exposed[] {
    return [
      this.frames,
      this.invalidFrames,
      this.leaseGrants,
      this.leaseEnds,
      this.checkpointVerdicts,
      this.checkpointBytes,
    ];
  }
}

/** What the scrape-time gauges read. */
export interface MetricSources {
  db: Db;
  hub: { metrics: HubMetrics; online(): string[] };
  sampling: { depth(): Promise<{ waiting: number; running: number }> };
}

/**
 * The coordinator's own metrics in `registry`: the hub's counters, gauges read at scrape and
 * the sampling latency histogram (observed by routes/samples).
 */
export class CoordinatorMetrics {
  readonly sampleSeconds: Histogram<'outcome'>;

  constructor(
    readonly registry: Registry,
    { db, hub, sampling }: MetricSources,
  ) {
    for (const m of hub.metrics.all()) registry.registerMetric(m as unknown as Metric);
    const registers = [registry];
    new Gauge({
      name: 'archipelago_workers_connected',
      help: 'Workers connected to this coordinator (said hello, socket open)',
      registers,
      collect() {
        this.set(hub.online().length);
      },
    });
    const activeLeases = db.$client
      .prepare("SELECT count(*) FROM leases WHERE status = 'active'")
      .pluck();
    new Gauge({
      name: 'archipelago_leases_active',
      help: 'Active leases (until the sweep ends an expired one)',
      registers,
      collect() {
        this.set(activeLeases.get() as number);
      },
    });
    const queuedJobs = db.$client.prepare(
      "SELECT name, count(*) AS n FROM jobs WHERE status = 'queued' GROUP BY name",
    );
    new Gauge({
      name: 'archipelago_job_queue_depth',
      help: 'Jobs queued and not yet claimed, by job name',
      labelNames: ['job'] as const,
      registers,
      collect() {
        this.reset();
        for (const r of queuedJobs.all() as { name: string; n: number }[])
          this.set({ job: r.name }, r.n);
      },
    });
    new Gauge({
      name: 'archipelago_sampling_queue_depth',
      help: 'Sampling requests waiting and running: in-process, or on the shared BullMQ queue with Redis',
      labelNames: ['state'] as const,
      registers,
      async collect() {
        this.reset();
        // With Redis, a read of the queue; a Redis that does not answer leaves the gauge out of
        // this scrape rather than holding it up.
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<null>((resolve) => {
          timer = setTimeout(() => resolve(null), SAMPLING_DEPTH_TIMEOUT_MS);
        });
        const d = await Promise.race([sampling.depth().catch(() => null), late]);
        clearTimeout(timer);
        if (!d) return;
        this.set({ state: 'waiting' }, d.waiting);
        this.set({ state: 'running' }, d.running);
      },
    });
    this.sampleSeconds = new Histogram({
      name: 'archipelago_sampling_request_seconds',
      help: 'Sampling requests by outcome (ok, busy, cancelled, error): seconds from the request to its samples, waiting included',
      labelNames: ['outcome'] as const,
      buckets: [...SAMPLE_BUCKETS],
      registers,
    });
  }
}
