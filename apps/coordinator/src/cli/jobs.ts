import { type Command, Option } from 'commander';
import { loadConfig } from '../config.js';
import { openCoordinator } from '../coordinator.js';
import { configOption, dataDirOption, int, logLevelOption } from './options.js';
import { untilSignal } from './until-signal.js';
import { UsageError } from './usage-error.js';

/** `jobs`: a job processor beside the server, taking its work from Redis. */
export function registerJobsCommands(program: Command): void {
  program
    .command('jobs')
    .description(
      'process jobs (dataset import and clustering, checkpoint validation, router training, publishing) and sampling requests from Redis, beside a coordinator with the same data directory',
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
}
