import path from 'node:path';
import { ConfigError } from '@archipelago/diffusion';
import { type Static, Type } from 'typebox';
import { Value } from 'typebox/value';

/**
 * Images a published ensemble is scored on by default: the demo's 4-expert 16x16 ensemble took
 * 20.9 s (sampling 17.2 s, scoring 1.5 s) on 2 busy cores.
 */
export const SCORE_SAMPLES_DEFAULT = 100;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const ConfigSchema = Type.Object({
  host: Type.String({ minLength: 1, default: '127.0.0.1' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
  dataDir: Type.String({ minLength: 1, default: './data' }),
  publicUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
  logLevel: Type.Enum(LOG_LEVELS, { default: 'info' }),
  adminKey: Type.Optional(Type.String({ minLength: 16 })),
  /** When set, reads under /api/v1 (and the dashboard's data) need this key or the admin key. */
  viewKey: Type.Optional(Type.String({ minLength: 8 })),
  redisUrl: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  /** Prefix of every BullMQ key, so deployments (or test runs) can share one Redis. */
  redisPrefix: Type.String({ minLength: 1, pattern: '^[A-Za-z0-9_.:-]+$', default: 'archipelago' }),
  /**
   * With Redis: whether the coordinator process itself takes jobs and sampling requests (default
   * true); false leaves them to `coordinator jobs` / `coordinator sampler` processes.
   */
  localJobs: Type.Boolean({ default: true }),
  /** Router training steps once every expert is done (batch 64). */
  routerSteps: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 400 }),
  /**
   * Images sampled to score each published ensemble (the `score-ensemble` job: FD-cls, precision,
   * recall, diversity, fragments); 0 disables scoring. At least 10 when set.
   */
  scoreSamples: Type.Union([Type.Literal(0), Type.Integer({ minimum: 10, maximum: 100_000 })], {
    default: SCORE_SAMPLES_DEFAULT,
  }),
  /** Sampling requests waiting beyond the one running; more get 429. */
  maxQueuedSamples: Type.Integer({ minimum: 0, maximum: 1000, default: 8 }),
  /** Sampling requests one client may have waiting or running at once; more get 429 client_busy. */
  maxQueuedSamplesPerClient: Type.Integer({ minimum: 1, maximum: 1000, default: 2 }),
  /**
   * Whether to believe X-Forwarded-For (the client is its first untrusted address): false (the
   * default: the socket's peer is the client), true (any proxy), or a comma-separated list of the
   * proxies' addresses or CIDR ranges. Every per-client limit keys on the client this decides.
   */
  trustProxy: Type.Union([Type.Boolean(), Type.String({ minLength: 1 })], { default: false }),
  /** Sampling requests one client may start per minute; more get 429 rate_limited. */
  sampleRateLimit: Type.Integer({ minimum: 1, maximum: 100_000, default: 30 }),
  /**
   * Failed authentications (wrong admin or view key, unknown or revoked worker token) one client
   * may make per minute; after that every attempt of that client is refused with rate_limited,
   * right keys included, until the minute is over.
   */
  authFailureLimit: Type.Integer({ minimum: 1, maximum: 100_000, default: 30 }),
  /** Worker socket connection attempts one client may make per minute; more get 429 rate_limited. */
  socketRateLimit: Type.Integer({ minimum: 1, maximum: 100_000, default: 60 }),
  /** Worker connections open at once on one token; a further hello is refused (connection_limit). */
  maxConnectionsPerToken: Type.Integer({ minimum: 1, maximum: 100_000, default: 4 }),
  /** Active leases at once across one token's workers; a further request is refused (lease_limit). */
  maxLeasesPerToken: Type.Integer({ minimum: 1, maximum: 100_000, default: 4 }),
  /** Event streams (`GET /api/v1/live`) open at once, and per client; more get 429 too_many_streams. */
  maxEventStreams: Type.Integer({ minimum: 1, maximum: 100_000, default: 100 }),
  maxEventStreamsPerClient: Type.Integer({ minimum: 1, maximum: 100_000, default: 4 }),
  migrationsDir: Type.Optional(Type.String({ minLength: 1 })),
  /** Largest JSON request body accepted by the REST API. */
  bodyLimitBytes: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, default: 1024 * 1024 }),
  /** Jobs run at once by the in-process queue (jobs are CPU-bound: keep it at most the cores). */
  jobConcurrency: Type.Integer({ minimum: 1, maximum: 64, default: 1 }),
  /**
   * With Redis: a running job that shows no sign of life for this long (its processor's lock in
   * Redis, a progress report, its result waiting) is re-queued as a new attempt; it is also the
   * lock a `coordinator jobs` process holds on a job it computes (renewed at half of it).
   */
  jobStaleMs: Type.Integer({ minimum: 1000, maximum: 3_600_000, default: 30_000 }),
  /**
   * Worker threads that sampling, checkpoint validation and router training run on, off the event
   * loop that serves requests and worker sockets (compute/compute-pool.ts); 0: on the event loop.
   */
  computeThreads: Type.Integer({ minimum: 0, maximum: 64, default: 1 }),
  /** Workers heartbeat this often while they hold a lease. */
  heartbeatMs: Type.Integer({ minimum: 50, maximum: 600_000, default: 5000 }),
  /**
   * Acknowledged heartbeats (lease renewals, progress, the training curve) are written this often,
   * in one transaction; a coordinator crash loses at most this much of them.
   */
  heartbeatFlushMs: Type.Integer({ minimum: 10, maximum: 10_000, default: 500 }),
  /** A worker connection that has not said hello within this long is closed. */
  helloTimeoutMs: Type.Integer({ minimum: 50, maximum: 600_000, default: 10_000 }),
  /** The coordinator pings each worker socket this often; one that missed the last pong is dropped. */
  wsPingMs: Type.Integer({ minimum: 50, maximum: 600_000, default: 20_000 }),
  /** A request (headers and body) must have arrived within this long, or it gets 408. */
  requestTimeoutMs: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 30_000 }),
  /** An HTTP connection idle (nothing read or written) for this long is closed. */
  connectionTimeoutMs: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 300_000 }),
  /** A lease not renewed for this long expires (about three missed heartbeats). */
  leaseTtlMs: Type.Integer({ minimum: 150, maximum: 3_600_000, default: 15_000 }),
  /**
   * A lease whose worker reports training paused (the volunteer paused it) is kept this long from
   * the pause, heartbeats or not, and no longer: then it expires like any other and its expert is
   * leased again. At least leaseTtlMs.
   */
  pausedLeaseGraceMs: Type.Integer({ minimum: 150, maximum: 7 * 86_400_000, default: 3_600_000 }),
  /** Largest checkpoint a worker may upload. */
  maxCheckpointBytes: Type.Integer({ minimum: 1024, default: 4 * 1024 ** 3 }),
  s3: Type.Optional(
    Type.Object({
      bucket: Type.String({ minLength: 3 }),
      prefix: Type.Optional(Type.String()),
      endpoint: Type.Optional(Type.String({ pattern: '^https?://' })),
      region: Type.Optional(Type.String()),
      forcePathStyle: Type.Optional(Type.Boolean()),
    }),
  ),
});

export type CoordinatorConfig = Static<typeof ConfigSchema> & {
  /** Absolute data directory. */
  dataDir: string;
  /** Base URL workers and browsers use to reach this coordinator. */
  publicUrl: string;
  /** False when publicUrl was derived from host and port (so port 0 is resolved at listen). */
  publicUrlExplicit: boolean;
};

/** An invalid setting: the workspace's one ConfigError (from @archipelago/diffusion). */
export { ConfigError };

/** Environment variables the coordinator reads; flags win over them. */
export const ENV = {
  host: 'ARCHIPELAGO_HOST',
  port: 'ARCHIPELAGO_PORT',
  dataDir: 'ARCHIPELAGO_DATA_DIR',
  publicUrl: 'ARCHIPELAGO_PUBLIC_URL',
  logLevel: 'ARCHIPELAGO_LOG_LEVEL',
  adminKey: 'ARCHIPELAGO_ADMIN_KEY',
  viewKey: 'ARCHIPELAGO_VIEW_KEY',
  redisUrl: 'ARCHIPELAGO_REDIS_URL',
  redisPrefix: 'ARCHIPELAGO_REDIS_PREFIX',
  localJobs: 'ARCHIPELAGO_LOCAL_JOBS',
  routerSteps: 'ARCHIPELAGO_ROUTER_STEPS',
  scoreSamples: 'ARCHIPELAGO_SCORE_SAMPLES',
  maxQueuedSamples: 'ARCHIPELAGO_MAX_QUEUED_SAMPLES',
  maxQueuedSamplesPerClient: 'ARCHIPELAGO_MAX_QUEUED_SAMPLES_PER_CLIENT',
  trustProxy: 'ARCHIPELAGO_TRUST_PROXY',
  sampleRateLimit: 'ARCHIPELAGO_SAMPLE_RATE_LIMIT',
  authFailureLimit: 'ARCHIPELAGO_AUTH_FAILURE_LIMIT',
  socketRateLimit: 'ARCHIPELAGO_SOCKET_RATE_LIMIT',
  maxConnectionsPerToken: 'ARCHIPELAGO_MAX_CONNECTIONS_PER_TOKEN',
  maxLeasesPerToken: 'ARCHIPELAGO_MAX_LEASES_PER_TOKEN',
  maxEventStreams: 'ARCHIPELAGO_MAX_EVENT_STREAMS',
  maxEventStreamsPerClient: 'ARCHIPELAGO_MAX_EVENT_STREAMS_PER_CLIENT',
  migrationsDir: 'ARCHIPELAGO_MIGRATIONS_DIR',
  bodyLimitBytes: 'ARCHIPELAGO_BODY_LIMIT_BYTES',
  jobConcurrency: 'ARCHIPELAGO_JOB_CONCURRENCY',
  jobStaleMs: 'ARCHIPELAGO_JOB_STALE_MS',
  computeThreads: 'ARCHIPELAGO_COMPUTE_THREADS',
  heartbeatMs: 'ARCHIPELAGO_HEARTBEAT_MS',
  heartbeatFlushMs: 'ARCHIPELAGO_HEARTBEAT_FLUSH_MS',
  helloTimeoutMs: 'ARCHIPELAGO_HELLO_TIMEOUT_MS',
  wsPingMs: 'ARCHIPELAGO_WS_PING_MS',
  requestTimeoutMs: 'ARCHIPELAGO_REQUEST_TIMEOUT_MS',
  connectionTimeoutMs: 'ARCHIPELAGO_CONNECTION_TIMEOUT_MS',
  leaseTtlMs: 'ARCHIPELAGO_LEASE_TTL_MS',
  pausedLeaseGraceMs: 'ARCHIPELAGO_PAUSED_LEASE_GRACE_MS',
  maxCheckpointBytes: 'ARCHIPELAGO_MAX_CHECKPOINT_BYTES',
} as const;

const S3_ENV = {
  bucket: 'ARCHIPELAGO_S3_BUCKET',
  prefix: 'ARCHIPELAGO_S3_PREFIX',
  endpoint: 'ARCHIPELAGO_S3_ENDPOINT',
  region: 'ARCHIPELAGO_S3_REGION',
  forcePathStyle: 'ARCHIPELAGO_S3_FORCE_PATH_STYLE',
} as const;

export type ConfigInput = Partial<Record<keyof typeof ENV, string | number | boolean | undefined>>;

function fromEnv(env: NodeJS.ProcessEnv): ConfigInput {
  const out: ConfigInput = {};
  for (const [field, name] of Object.entries(ENV) as [keyof typeof ENV, string][]) {
    const value = env[name];
    if (value !== undefined && value !== '') out[field] = value;
  }
  if (out.port === undefined && env.PORT) out.port = env.PORT;
  return out;
}

function s3FromEnv(env: NodeJS.ProcessEnv): CoordinatorConfig['s3'] {
  const bucket = env[S3_ENV.bucket];
  if (!bucket) return undefined;
  const s3: NonNullable<CoordinatorConfig['s3']> = { bucket };
  const prefix = env[S3_ENV.prefix];
  const endpoint = env[S3_ENV.endpoint];
  const region = env[S3_ENV.region] ?? env.AWS_REGION;
  const pathStyle = env[S3_ENV.forcePathStyle];
  if (prefix) s3.prefix = prefix;
  if (endpoint) s3.endpoint = endpoint;
  if (region) s3.region = region;
  if (pathStyle !== undefined) s3.forcePathStyle = /^(1|true|yes)$/i.test(pathStyle);
  return s3;
}

/**
 * Build the validated configuration: schema defaults, then environment variables, then flags.
 *
 * @throws {ConfigError} naming every invalid setting and where it came from.
 */
export function loadConfig(
  flags: ConfigInput = {},
  env: NodeJS.ProcessEnv = process.env,
): CoordinatorConfig {
  const merged: Record<string, unknown> = { ...fromEnv(env) };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) merged[k] = v;
  const s3 = s3FromEnv(env);
  if (s3) merged.s3 = s3;
  for (const k of [
    'port',
    'bodyLimitBytes',
    'jobConcurrency',
    'jobStaleMs',
    'heartbeatMs',
    'heartbeatFlushMs',
    'helloTimeoutMs',
    'leaseTtlMs',
    'pausedLeaseGraceMs',
    'maxCheckpointBytes',
    'routerSteps',
    'scoreSamples',
    'maxQueuedSamples',
    'maxQueuedSamplesPerClient',
    'sampleRateLimit',
    'authFailureLimit',
    'socketRateLimit',
    'maxConnectionsPerToken',
    'maxLeasesPerToken',
    'maxEventStreams',
    'maxEventStreamsPerClient',
    'wsPingMs',
    'requestTimeoutMs',
    'connectionTimeoutMs',
  ] as const) {
    if (typeof merged[k] === 'string' && /^\d+(\.\d+)?$/.test(merged[k] as string)) {
      merged[k] = Number(merged[k]);
    }
  }
  if (typeof merged.trustProxy === 'string') {
    if (/^(1|true|yes)$/i.test(merged.trustProxy)) merged.trustProxy = true;
    else if (/^(0|false|no)$/i.test(merged.trustProxy)) merged.trustProxy = false;
  }
  if (typeof merged.localJobs === 'string') {
    if (/^(1|true|yes)$/i.test(merged.localJobs)) merged.localJobs = true;
    else if (/^(0|false|no)$/i.test(merged.localJobs)) merged.localJobs = false;
  }
  const withDefaults = Value.Default(ConfigSchema, merged) as Record<string, unknown>;
  const errors = [...Value.Errors(ConfigSchema, withDefaults)];
  if (errors.length > 0) {
    const lines = errors.map((e) => {
      const field = e.instancePath.replace(/^\//, '').split('/')[0] ?? '';
      const envName = ENV[field as keyof typeof ENV];
      const where = envName ? ` (flag --${kebab(field)} or ${envName})` : '';
      return `${e.instancePath || '(root)'}: ${e.message}, got ${JSON.stringify(valueAt(withDefaults, e.instancePath))}${where}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const cfg = withDefaults as Static<typeof ConfigSchema>;
  if (cfg.leaseTtlMs < 2 * cfg.heartbeatMs) {
    throw new ConfigError(
      `invalid configuration:\n  leaseTtlMs (${cfg.leaseTtlMs}) must be at least twice heartbeatMs (${cfg.heartbeatMs}), or one late heartbeat loses the lease`,
    );
  }
  if (cfg.pausedLeaseGraceMs < cfg.leaseTtlMs) {
    throw new ConfigError(
      `invalid configuration:\n  pausedLeaseGraceMs (${cfg.pausedLeaseGraceMs}) must be at least leaseTtlMs (${cfg.leaseTtlMs}): pausing must not shorten a lease`,
    );
  }
  const dataDir = path.resolve(cfg.dataDir);
  const shownHost = cfg.host === '0.0.0.0' || cfg.host === '::' ? '127.0.0.1' : cfg.host;
  const publicUrl = (cfg.publicUrl ?? `http://${shownHost}:${cfg.port}`).replace(/\/+$/, '');
  return { ...cfg, dataDir, publicUrl, publicUrlExplicit: cfg.publicUrl !== undefined };
}

function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function valueAt(obj: Record<string, unknown>, pointer: string): unknown {
  let cur: unknown = obj;
  for (const part of pointer.split('/').filter(Boolean)) {
    cur = (cur as Record<string, unknown> | undefined)?.[part];
  }
  return cur;
}
