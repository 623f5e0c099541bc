import { initBackend } from '@archipelago/models';
import {
  BUILTIN_DATASET_NAMES,
  ClusterBody,
  CreateRunBody,
  FM_TIME_SAMPLINGS,
  ImportDatasetBody,
  MODEL_PRESETS,
  SCHEDULES,
} from '@archipelago/protocol';
import { Command, InvalidArgumentError, Option } from 'commander';
import { pino } from 'pino';
import { type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { ConfigError, type ConfigInput, LOG_LEVELS, loadConfig } from './config.js';
import { openCoordinator, openStore } from './coordinator.js';
import { DEMO_DEFAULTS, runDemo } from './demo.js';
import { ApiError } from './errors.js';
import { newId } from './ids.js';
import { progressPrinter } from './progress.js';
import { rotateAdminKey } from './secrets.js';
import { startServer } from './server.js';
import {
  clusterStoredDataset,
  getDataset,
  importDataset,
  listDatasets,
  precheckImport,
} from './services/datasets.js';
import { createRun, getRun, listRuns } from './services/runs.js';
import { SamplingService } from './services/sampling.js';
import { createToken, listTokens, revokeToken } from './services/tokens.js';
import { VERSION } from './version.js';

class UsageError extends Error {}

/** Resolves with the first SIGINT or SIGTERM. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
}

const TokenBody = Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) });

const int = (name: string) => (value: string) => {
  if (!/^-?\d+$/.test(value))
    throw new InvalidArgumentError(`${name} must be an integer, got "${value}"`);
  return Number(value);
};
const num = (name: string) => (value: string) => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n))
    throw new InvalidArgumentError(`${name} must be a number, got "${value}"`);
  return n;
};

/** Validate a request body built from flags against the same schema the REST API uses. */
function checkBody<T>(schema: TSchema, body: unknown, what: string): T {
  const errors = [...Value.Errors(schema, body)];
  if (errors.length > 0) {
    const lines = errors.map(
      (e) => `${e.instancePath.replace(/^\//, '').replaceAll('/', '.') || what}: ${e.message}`,
    );
    throw new UsageError(`invalid ${what}:\n  ${lines.join('\n  ')}`);
  }
  return body as T;
}

const dataDirOption = () =>
  new Option(
    '--data-dir <dir>',
    'data directory (SQLite database, local object store, secrets)',
  ).env('ARCHIPELAGO_DATA_DIR');

/** CLI commands work on the data directory directly, like the server, without needing it to run. */
async function withCoordinator<T>(
  opts: { dataDir?: string; logLevel?: string },
  fn: (c: Awaited<ReturnType<typeof openCoordinator>>) => Promise<T>,
): Promise<T> {
  const config = loadConfig({ dataDir: opts.dataDir, logLevel: opts.logLevel ?? 'warn' });
  const coordinator = await openCoordinator(config, {
    log: pino({ level: config.logLevel }, pino.destination(2)),
    startJobs: false,
  });
  try {
    return await fn(coordinator);
  } finally {
    await coordinator.close();
  }
}

const print = (value: unknown, json: boolean, text: () => string) =>
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);

function clusterSummary(c: {
  k: number;
  sizes: number[];
  inertia: number;
  fineK: number;
  durationMs: number;
  id: string;
}) {
  const total = c.sizes.reduce((a, b) => a + b, 0);
  const rows = c.sizes.map(
    (s, i) =>
      `    cluster ${String(i).padStart(2)}  ${String(s).padStart(7)} images  ${((100 * s) / total).toFixed(1).padStart(5)} %`,
  );
  return [
    `  clustering ${c.id}: K=${c.k} (from ${c.fineK} fine centroids) in ${(c.durationMs / 1000).toFixed(1)} s, inertia ${c.inertia.toFixed(1)}`,
    ...rows,
  ].join('\n');
}

export function buildCli(): Command {
  const program = new Command('coordinator')
    .description(
      'Archipelago coordinator: datasets, shards, runs and experts for decentralized diffusion training',
    )
    .version(VERSION)
    .showHelpAfterError();

  program
    .command('serve')
    .description('run the coordinator server')
    .addOption(dataDirOption())
    .addOption(new Option('--host <host>', 'address to listen on').env('ARCHIPELAGO_HOST'))
    .addOption(
      new Option('--port <port>', 'port to listen on (0: any free port)')
        .argParser(int('--port'))
        .env('ARCHIPELAGO_PORT'),
    )
    .addOption(
      new Option('--public-url <url>', 'URL workers and browsers use to reach this server').env(
        'ARCHIPELAGO_PUBLIC_URL',
      ),
    )
    .addOption(
      new Option('--log-level <level>', 'log level')
        .choices(LOG_LEVELS)
        .env('ARCHIPELAGO_LOG_LEVEL'),
    )
    .addOption(
      new Option('--view-key <key>', 'key needed to read the API and the dashboard').env(
        'ARCHIPELAGO_VIEW_KEY',
      ),
    )
    .addOption(
      new Option('--redis-url <url>', 'run jobs and sampling through BullMQ on this Redis').env(
        'ARCHIPELAGO_REDIS_URL',
      ),
    )
    .addOption(
      new Option(
        '--no-local-jobs',
        'with Redis: leave jobs and sampling to `coordinator jobs` / `coordinator sampler` processes',
      ),
    )
    .action(async (opts: ConfigInput & { localJobs?: boolean }) => {
      // Commander sets localJobs true by default; only an explicit --no-local-jobs overrides env.
      const { localJobs, ...rest } = opts;
      await startServer(loadConfig({ ...rest, ...(localJobs === false ? { localJobs } : {}) }));
    });

  program
    .command('jobs')
    .description(
      'process jobs (dataset import and clustering, checkpoint validation, router training, publishing) and sampling requests from Redis, beside a coordinator with the same data directory',
    )
    .addOption(dataDirOption())
    .addOption(
      new Option('--redis-url <url>', 'the Redis the coordinator uses').env(
        'ARCHIPELAGO_REDIS_URL',
      ),
    )
    .addOption(new Option('--concurrency <n>', 'jobs at once').argParser(int('--concurrency')))
    .option('--no-sampling', 'leave sampling requests to `coordinator sampler` processes')
    .addOption(
      new Option('--log-level <level>', 'log level')
        .choices(LOG_LEVELS)
        .env('ARCHIPELAGO_LOG_LEVEL'),
    )
    .action(
      async (opts: {
        dataDir?: string;
        redisUrl?: string;
        concurrency?: number;
        sampling: boolean;
        logLevel?: string;
      }) => {
        const config = loadConfig({
          dataDir: opts.dataDir,
          redisUrl: opts.redisUrl,
          jobConcurrency: opts.concurrency,
          logLevel: opts.logLevel ?? 'info',
        });
        if (!config.redisUrl)
          throw new UsageError(
            'coordinator jobs takes its work from Redis: pass --redis-url or set ARCHIPELAGO_REDIS_URL (without Redis the coordinator runs jobs itself)',
          );
        const coordinator = await openCoordinator(config, {
          processJobs: true,
          processSampling: opts.sampling,
        });
        coordinator.log.info(
          { redis: config.redisUrl, dataDir: config.dataDir, sampling: opts.sampling },
          'job processor ready',
        );
        const signal = await untilSignal();
        coordinator.log.info({ signal }, 'job processor stopping; running jobs finish first');
        await coordinator.close();
      },
    );

  program
    .command('sampler')
    .description(
      'serve sampling requests from Redis; needs only Redis and the object store (S3 settings, or --data-dir for a local store), so it can run on any machine',
    )
    .addOption(dataDirOption())
    .addOption(
      new Option('--redis-url <url>', 'the Redis the coordinator uses').env(
        'ARCHIPELAGO_REDIS_URL',
      ),
    )
    .addOption(
      new Option('--log-level <level>', 'log level')
        .choices(LOG_LEVELS)
        .env('ARCHIPELAGO_LOG_LEVEL'),
    )
    .action(async (opts: { dataDir?: string; redisUrl?: string; logLevel?: string }) => {
      const config = loadConfig({
        dataDir: opts.dataDir,
        redisUrl: opts.redisUrl,
        logLevel: opts.logLevel ?? 'info',
      });
      if (!config.redisUrl)
        throw new UsageError(
          'coordinator sampler takes requests from Redis: pass --redis-url or set ARCHIPELAGO_REDIS_URL',
        );
      const log = pino({ level: config.logLevel });
      const backend = await initBackend();
      const store = openStore(config);
      const sampling = new SamplingService({
        store,
        log,
        redis: { url: config.redisUrl, prefix: config.redisPrefix },
        local: true,
        maxQueued: config.maxQueuedSamples,
      });
      await sampling.start();
      log.info(
        { redis: config.redisUrl, store: store.description, backend: backend.name },
        'sampler ready',
      );
      const signal = await untilSignal();
      log.info({ signal }, 'sampler stopping');
      await sampling.close();
      await store.close();
    });

  const dataset = program.command('dataset').description('import, cluster and inspect datasets');
  dataset
    .command('import')
    .description(
      'import a folder of PNG/JPEG images or a built-in dataset, optionally clustering it into K shards',
    )
    .requiredOption('--name <name>', 'dataset name')
    .addOption(
      new Option('--builtin <name>', 'a dataset shipped with Archipelago')
        .choices(BUILTIN_DATASET_NAMES)
        .conflicts('folder'),
    )
    .option('--folder <dir>', 'folder of PNG/JPEG images (labels from sub-folder names)')
    .option('--no-labels', 'do not take labels from sub-folder names')
    .option('--resolution <px>', 'square side in pixels', int('--resolution'))
    .addOption(new Option('--channels <n>', '1 (grayscale) or 3 (RGB)').choices(['1', '3']))
    .option(
      '--embeddings <file.npy>',
      'precomputed float32 features, one row per image in import order',
    )
    .option(
      '--pca-components <n>',
      'PCA features when no embeddings are given',
      int('--pca-components'),
    )
    .option('--clusters <k>', 'cluster into K shards right away', int('--clusters'))
    .option('--fine-k <n>', 'fine centroids of the two-level k-means', int('--fine-k'))
    .option('--seed <n>', 'clustering seed', int('--seed'))
    .option('--val-fraction <f>', 'held-out validation fraction per shard', num('--val-fraction'))
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) => {
      if (!opts.builtin && !opts.folder)
        throw new UsageError('give --builtin <name> or --folder <dir>');
      const body = checkBody<ImportDatasetBody>(
        ImportDatasetBody,
        {
          name: opts.name,
          source: opts.builtin
            ? { kind: 'builtin', name: opts.builtin }
            : {
                kind: 'folder',
                path: opts.folder,
                ...(opts.labels === false ? { labelsFromSubfolders: false } : {}),
              },
          ...(opts.resolution !== undefined ? { resolution: opts.resolution } : {}),
          ...(opts.channels !== undefined ? { channels: Number(opts.channels) } : {}),
          ...(opts.embeddings ? { embeddingsPath: opts.embeddings } : {}),
          ...(opts.pcaComponents !== undefined ? { pcaComponents: opts.pcaComponents } : {}),
          ...(opts.clusters !== undefined
            ? {
                cluster: {
                  k: opts.clusters,
                  ...(opts.fineK !== undefined ? { fineK: opts.fineK } : {}),
                  ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
                  ...(opts.valFraction !== undefined ? { valFraction: opts.valFraction } : {}),
                },
              }
            : {}),
        },
        'import options',
      );
      await precheckImport(body);
      await withCoordinator(opts, async (c) => {
        const bar = progressPrinter();
        const result = await importDataset(
          c,
          body,
          { datasetId: newId('dataset') },
          bar.update,
        ).finally(bar.done);
        const ds = getDataset(c.db, result.datasetId);
        print(ds, opts.json, () =>
          [
            `imported dataset ${ds.id} "${ds.name}": ${ds.count} images ${ds.width}x${ds.height}x${ds.channels}, ${ds.classNames.length} classes, features ${ds.featureKind}(${ds.featureDim}) in ${(ds.importMs / 1000).toFixed(1)} s`,
            ...ds.clusterings.map(clusterSummary),
          ].join('\n'),
        );
      });
    });

  dataset
    .command('cluster <datasetId>')
    .description('cluster an imported dataset into K shards')
    .requiredOption('--k <k>', 'clusters (experts)', int('--k'))
    .option('--fine-k <n>', 'fine centroids', int('--fine-k'))
    .option('--seed <n>', 'seed', int('--seed'))
    .option('--val-fraction <f>', 'held-out validation fraction per shard', num('--val-fraction'))
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (datasetId: string, opts) => {
      const body = checkBody<ClusterBody>(
        ClusterBody,
        {
          k: opts.k,
          ...(opts.fineK !== undefined ? { fineK: opts.fineK } : {}),
          ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
          ...(opts.valFraction !== undefined ? { valFraction: opts.valFraction } : {}),
        },
        'cluster options',
      );
      await withCoordinator(opts, async (c) => {
        getDataset(c.db, datasetId);
        const bar = progressPrinter();
        const { clusteringId } = await clusterStoredDataset(
          c,
          { ...body, datasetId, clusteringId: newId('clustering') },
          bar.update,
        ).finally(bar.done);
        const ds = getDataset(c.db, datasetId);
        const cl = ds.clusterings.find((x) => x.id === clusteringId)!;
        print(cl, opts.json, () => clusterSummary(cl));
      });
    });

  dataset
    .command('list')
    .description('list datasets')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) =>
      withCoordinator(opts, async (c) => {
        const all = listDatasets(c.db);
        print(all, opts.json, () =>
          all.length === 0
            ? 'no datasets'
            : all
                .map(
                  (d) =>
                    `${d.id}  ${d.name.padEnd(20)} ${String(d.count).padStart(7)} images  ${d.width}x${d.height}x${d.channels}  clusterings: ${d.clusterings.map((x) => `${x.id}(K=${x.k})`).join(', ') || '-'}`,
                )
                .join('\n'),
        );
      }),
    );

  dataset
    .command('show <datasetId>')
    .description('show a dataset with its clusterings')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (id: string, opts) =>
      withCoordinator(opts, async (c) => {
        const ds = getDataset(c.db, id);
        print(ds, opts.json, () =>
          [
            `${ds.id} "${ds.name}": ${ds.count} images ${ds.width}x${ds.height}x${ds.channels}`,
            ...ds.clusterings.map(clusterSummary),
          ].join('\n'),
        );
      }),
    );

  const run = program.command('run').description('create and inspect training runs');
  run
    .command('create')
    .description('create a run: K experts over a clustering of a dataset')
    .requiredOption('--dataset <id>', 'dataset id')
    .requiredOption('--experts <k>', 'number of experts (clusters)', int('--experts'))
    .option('--objectives <mix>', 'objective mix: ddpm:2,fm:6 | fm | ddpm | any', 'any')
    .addOption(new Option('--schedule <name>', 'DDPM noise schedule').choices(SCHEDULES))
    .addOption(
      new Option('--fm-time-sampling <kind>', 'training times of FM experts').choices(
        FM_TIME_SAMPLINGS,
      ),
    )
    .addOption(new Option('--model <preset>', 'model size preset').choices(MODEL_PRESETS))
    .requiredOption('--steps <n>', 'training steps per expert', int('--steps'))
    .option('--checkpoint-interval <n>', 'steps between checkpoints', int('--checkpoint-interval'))
    .option('--batch-size <n>', 'batch size', int('--batch-size'))
    .option('--learning-rate <lr>', 'learning rate', num('--learning-rate'))
    .option('--resolution <px>', "resolution (must match the dataset's)", int('--resolution'))
    .option('--seed <n>', 'seed', int('--seed'))
    .option('--name <name>', 'run name')
    .option('--init-fm-from-ddpm', 'initialise FM experts from a finished DDPM checkpoint')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) => {
      const body = checkBody<CreateRunBody>(
        CreateRunBody,
        Object.fromEntries(
          Object.entries({
            name: opts.name,
            datasetId: opts.dataset,
            experts: opts.experts,
            objectives: opts.objectives,
            schedule: opts.schedule,
            fmTimeSampling: opts.fmTimeSampling,
            model: opts.model,
            stepsPerExpert: opts.steps,
            checkpointInterval: opts.checkpointInterval,
            batchSize: opts.batchSize,
            learningRate: opts.learningRate,
            resolution: opts.resolution,
            seed: opts.seed,
            initFmFromDdpm: opts.initFmFromDdpm,
          }).filter(([, v]) => v !== undefined),
        ),
        'run options',
      );
      await withCoordinator(opts, async (c) => {
        const created = createRun(c, body);
        const bar = progressPrinter();
        // Clustering, when the run needs one, runs here and now (only that job: a server
        // sharing this data dir keeps its own).
        const pending = c.db.query.jobs
          .findFirst({
            where: (j, { eq, and }) => and(eq(j.runId, created.id), eq(j.status, 'queued')),
          })
          .sync();
        if (pending) {
          const timer = setInterval(() => {
            const p = c.jobs.get(pending.id)?.progress;
            if (p) bar.update(p.stage, p.done, p.total);
          }, 200);
          await c.jobs.processJob(pending.id).finally(() => {
            clearInterval(timer);
            bar.done();
          });
        }
        const shown = getRun(c.db, created.id);
        print(shown, opts.json, () => runSummary(shown));
      });
    });

  run
    .command('list')
    .description('list runs')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) =>
      withCoordinator(opts, async (c) => {
        const all = listRuns(c.db);
        print(all, opts.json, () =>
          all.length === 0
            ? 'no runs'
            : all
                .map(
                  (r) =>
                    `${r.id}  ${r.name.padEnd(24)} ${r.status.padEnd(10)} K=${r.k}  ${r.objectives}`,
                )
                .join('\n'),
        );
      }),
    );

  run
    .command('show <runId>')
    .description("show a run with each expert's cluster, size, objective and status")
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (id: string, opts) =>
      withCoordinator(opts, async (c) => {
        const shown = getRun(c.db, id);
        print(shown, opts.json, () => runSummary(shown));
      }),
    );

  const token = program.command('token').description('worker tokens: create, list, revoke');
  token
    .command('create')
    .description('create a worker token and print its secret (shown once)')
    .requiredOption('--name <name>', 'who the token is for')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) =>
      withCoordinator(opts, async (c) => {
        const created = createToken(
          c.db,
          checkBody<{ name: string }>(TokenBody, { name: opts.name }, 'token options').name,
        );
        print(
          created,
          opts.json,
          () =>
            `${created.token}\n(token ${created.id} "${created.name}"; the secret is not shown again)`,
        );
      }),
    );
  token
    .command('list')
    .description('list worker tokens')
    .option('--json', 'print JSON')
    .addOption(dataDirOption())
    .action(async (opts) =>
      withCoordinator(opts, async (c) => {
        const all = listTokens(c.db);
        print(all, opts.json, () =>
          all.length === 0
            ? 'no tokens'
            : all
                .map(
                  (t) =>
                    `${t.id}  ${t.name.padEnd(24)} ${t.prefix}…  ${t.revokedAt ? `revoked ${t.revokedAt}` : 'active'}`,
                )
                .join('\n'),
        );
      }),
    );
  token
    .command('revoke <tokenId>')
    .description(
      "revoke a token; a running coordinator closes its workers' connections at their next heartbeat",
    )
    .addOption(dataDirOption())
    .action(async (id: string, opts) =>
      withCoordinator(opts, async (c) => {
        const t = revokeToken(c.db, id);
        process.stdout.write(`revoked ${t.id} "${t.name}"\n`);
      }),
    );

  program
    .command('admin-key')
    .description('manage the admin API key')
    .command('rotate')
    .description('replace the stored admin key with a new one and print it once')
    .addOption(dataDirOption())
    .action(async (opts) => {
      const config = loadConfig({ dataDir: opts.dataDir });
      process.stdout.write(`${rotateAdminKey(config.dataDir)}\n`);
    });

  program
    .command('demo')
    .description(
      'the main job on embedded defaults: import and cluster the built-in digits, train K mixed-objective experts with local workers, train the router, publish a signed ensemble and sample from it',
    )
    .option('--out <dir>', 'where outputs go', 'out/demo')
    .option('--experts <k>', 'experts (clusters)', int('--experts'), 4)
    .option('--port <port>', 'port for the coordinator (0: any free port)', int('--port'), 0)
    .option('--workers <n>', 'worker processes to spawn', int('--workers'), 2)
    .option('--steps <n>', 'training steps per expert', int('--steps'), DEMO_DEFAULTS.steps)
    .option('--batch-size <n>', 'training batch size', int('--batch-size'), DEMO_DEFAULTS.batchSize)
    .option('--keep-serving', 'keep the coordinator running afterwards')
    .action(async (opts) => runDemo(opts));

  return program;
}

function runSummary(r: ReturnType<typeof getRun>): string {
  const head = `run ${r.id} "${r.name}": ${r.status}, K=${r.k}, objectives ${r.objectives}, ${r.config.stepsPerExpert} steps/expert, model ${r.config.model}${r.error ? `\n  error: ${r.error}` : ''}`;
  const rows = r.experts.map(
    (e) =>
      `  expert ${e.id}  cluster ${String(e.cluster).padStart(2)}  ${e.objective.padEnd(4)} ${(e.schedule ?? '').padEnd(6)} ${e.status.padEnd(9)} size ${String(e.size ?? '-').padStart(6)}  step ${e.step}/${e.targetSteps}`,
  );
  return [head, ...rows].join('\n');
}

export async function main(argv = process.argv): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (err) {
    const known =
      err instanceof UsageError ||
      err instanceof ConfigError ||
      err instanceof ApiError ||
      (err as { name?: string }).name === 'DatasetImportError';
    process.stderr.write(
      `error: ${known ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`,
    );
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}
