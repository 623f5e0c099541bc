import { initBackend } from '@archipelago/models';
import type { Command } from 'commander';
import { pino } from 'pino';
import { loadConfig } from '../config.js';
import { openStore } from '../coordinator.js';
import { SamplingService } from '../services/sampling.js';
import { configOption, dataDirOption, logLevelOption } from './options.js';
import { untilSignal } from './until-signal.js';
import { UsageError } from './usage-error.js';

/** `sampler`: a sampling process that needs only Redis and the object store. */
export function registerSamplerCommands(program: Command): void {
  program
    .command('sampler')
    .description(
      'serve sampling requests from Redis; needs only Redis and the object store (S3 settings, or --data-dir for a local store), so it can run on any machine',
    )
    .addOption(dataDirOption())
    .addOption(configOption('redisUrl', '--redis-url <url>', 'the Redis the coordinator uses'))
    .addOption(logLevelOption())
    .action(async (opts: { dataDir?: string; redisUrl?: string; logLevel?: string }) => {
      const config = loadConfig({
        dataDir: opts.dataDir,
        redisUrl: opts.redisUrl,
        logLevel: opts.logLevel,
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
}
