import { initBackend } from '@archipelago/models';
import { type Command, Option } from 'commander';
import { pino } from 'pino';
import { ComputePool } from '../compute/compute-pool.js';
import { loadConfig } from '../config.js';
import { openStore } from '../coordinator.js';
import { createJobComputes, isPermanentJobError } from '../jobs/handlers.js';
import { JobProcessor } from '../jobs/job-processor.js';
import { SamplingService } from '../services/sampling.js';
import { configOption, dataDirOption, int, logLevelOption } from './options.js';
import { untilSignal } from './until-signal.js';
import { UsageError } from './usage-error.js';

/** `jobs`: a job processor that needs only Redis and the object store, on any machine. */
export function registerJobsCommands(program: Command): void {
  program
    .command('jobs')
    .description(
      "compute jobs (dataset import and clustering, checkpoint validation, router training, publishing) and sampling requests from Redis; needs only Redis and the object store (S3 settings, or --data-dir for a local store), never the coordinator's database, so it can run on any machine; the coordinator prepares each job, applies its result and signs manifests. A folder or embeddings file an import names on the coordinator's disk is staged in the object store for it",
    )
    .addOption(dataDirOption())
    .addOption(configOption('redisUrl', '--redis-url <url>', 'the Redis the coordinator uses'))
    .addOption(new Option('--concurrency <n>', 'jobs at once').argParser(int('--concurrency')))
    .option('--no-sampling', 'leave sampling requests to `coordinator sampler` processes')
    .addOption(logLevelOption())
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
          logLevel: opts.logLevel,
        });
        if (!config.redisUrl)
          throw new UsageError(
            'coordinator jobs takes its work from Redis: pass --redis-url or set ARCHIPELAGO_REDIS_URL (without Redis the coordinator runs jobs itself)',
          );
        const log = pino({ level: config.logLevel });
        const backend = await initBackend();
        const store = openStore(config);
        const redis = { url: config.redisUrl, prefix: config.redisPrefix };
        const compute =
          config.computeThreads > 0
            ? new ComputePool({
                config,
                backend: backend.name,
                threads: config.computeThreads,
                log,
              })
            : null;
        const processor = new JobProcessor({
          redis,
          log,
          computes: createJobComputes({ store, log, ...(compute ? { compute } : {}) }),
          concurrency: config.jobConcurrency,
          lockMs: config.jobStaleMs,
          isPermanent: isPermanentJobError,
        });
        const sampling = opts.sampling
          ? new SamplingService({
              store,
              log,
              redis,
              local: true,
              maxQueued: config.maxQueuedSamples,
              ...(compute ? { compute } : {}),
            })
          : null;
        await processor.start();
        await sampling?.start();
        log.info(
          {
            redis: config.redisUrl,
            store: store.description,
            backend: backend.name,
            processor: processor.owner,
            sampling: opts.sampling,
          },
          'job processor ready',
        );
        const signal = await untilSignal();
        log.info({ signal }, 'job processor stopping; running jobs finish first');
        await processor.stop();
        await sampling?.close();
        await compute?.close();
        await store.close();
      },
    );
}
