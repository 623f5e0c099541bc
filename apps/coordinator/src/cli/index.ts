/**
 * The `coordinator` program: each command group registers itself from its own module; this one
 * builds the program and turns errors into messages and exit codes.
 */
import { DATASET_ERROR_CODES } from '@archipelago/data';
import { Command } from 'commander';
import { ConfigError } from '../config.js';
import { DomainError } from '../errors.js';
import { VERSION } from '../version.js';
import { registerAdminKeyCommands } from './admin-key.js';
import { registerDatasetCommands } from './datasets.js';
import { registerDemoCommands } from './demo.js';
import { registerJobsCommands } from './jobs.js';
import { showConfigEnvInHelp } from './options.js';
import { registerRunCommands } from './runs.js';
import { registerSamplerCommands } from './sampler.js';
import { registerServeCommands } from './serve.js';
import { registerTokenCommands } from './tokens.js';
import { UsageError } from './usage-error.js';

export function buildCli(): Command {
  const program = showConfigEnvInHelp(
    new Command('coordinator')
      .description(
        'Archipelago coordinator: datasets, shards, runs and experts for decentralized diffusion training',
      )
      .version(VERSION)
      .showHelpAfterError(),
  );
  registerServeCommands(program);
  registerJobsCommands(program);
  registerSamplerCommands(program);
  registerDatasetCommands(program);
  registerRunCommands(program);
  registerTokenCommands(program);
  registerAdminKeyCommands(program);
  registerDemoCommands(program);
  return program;
}

/**
 * Codes of errors about what the user asked for: the CLI prints their message alone. Any other
 * error is a bug and is printed with its stack.
 */
const USER_ERROR_CODES: ReadonlySet<string> = new Set([
  UsageError.CODE,
  ConfigError.CODE,
  ...DATASET_ERROR_CODES,
]);

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export async function main(argv = process.argv): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (err) {
    const code = codeOf(err);
    const known = err instanceof DomainError || (code !== undefined && USER_ERROR_CODES.has(code));
    process.stderr.write(
      `error: ${known ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`,
    );
    process.exitCode = code === UsageError.CODE ? 2 : 1;
  }
}
