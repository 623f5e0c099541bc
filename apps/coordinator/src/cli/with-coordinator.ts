import { pino } from 'pino';
import { loadConfig } from '../config.js';
import { openCoordinator } from '../coordinator.js';

/** CLI commands work on the data directory directly, like the server, without needing it to run. */
export async function withCoordinator<T>(
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
