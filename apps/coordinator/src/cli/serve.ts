import { type Command, Option } from 'commander';
import { type ConfigInput, loadConfig } from '../config.js';
import { startServer } from '../server.js';
import { configOption, dataDirOption, int, logLevelOption } from './options.js';

/** `serve`: the coordinator server. */
export function registerServeCommands(program: Command): void {
  program
    .command('serve')
    .description('run the coordinator server')
    .addOption(dataDirOption())
    .addOption(configOption('host', '--host <host>', 'address to listen on'))
    .addOption(
      configOption('port', '--port <port>', 'port to listen on (0: any free port)').argParser(
        int('--port'),
      ),
    )
    .addOption(
      configOption(
        'publicUrl',
        '--public-url <url>',
        'URL workers and browsers use to reach this server',
      ),
    )
    .addOption(logLevelOption())
    .addOption(
      configOption('viewKey', '--view-key <key>', 'key needed to read the API and the dashboard'),
    )
    .addOption(
      configOption(
        'redisUrl',
        '--redis-url <url>',
        'run jobs and sampling through BullMQ on this Redis',
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
}
