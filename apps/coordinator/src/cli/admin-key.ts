import type { Command } from 'commander';
import { loadConfig } from '../config.js';
import { rotateAdminKey } from '../secrets.js';
import { dataDirOption } from './options.js';

/** `admin-key rotate`. */
export function registerAdminKeyCommands(program: Command): void {
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
}
