/** Parsing flags: number parsers, schema checks, and options for configuration settings. */
import { type Command, Help, InvalidArgumentError, Option } from 'commander';
import type { TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { ENV, LOG_LEVELS } from '../config.js';
import { UsageError } from './usage-error.js';

export const int = (name: string) => (value: string) => {
  if (!/^-?\d+$/.test(value))
    throw new InvalidArgumentError(`${name} must be an integer, got "${value}"`);
  return Number(value);
};

export const nonNegativeInt = (name: string) => (value: string) => {
  if (!/^\d+$/.test(value))
    throw new InvalidArgumentError(`${name} must be a non-negative integer, got "${value}"`);
  return Number(value);
};

export const num = (name: string) => (value: string) => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n))
    throw new InvalidArgumentError(`${name} must be a number, got "${value}"`);
  return n;
};

/** Validate a request body built from flags against the same schema the REST API uses. */
export function checkBody<T>(schema: TSchema, body: unknown, what: string): T {
  const errors = [...Value.Errors(schema, body)];
  if (errors.length > 0) {
    const lines = errors.map(
      (e) => `${e.instancePath.replace(/^\//, '').replaceAll('/', '.') || what}: ${e.message}`,
    );
    throw new UsageError(`invalid ${what}:\n  ${lines.join('\n  ')}`);
  }
  return body as T;
}

const envOfOption = new WeakMap<Option, string>();

/**
 * The flag of a configuration setting. Its help names the setting's environment variable, but
 * commander does not read it: `loadConfig` alone parses the environment, so a value has one
 * parser and one error message whichever way it came.
 */
export function configOption(field: keyof typeof ENV, flags: string, description: string): Option {
  const option = new Option(flags, description);
  envOfOption.set(option, ENV[field]);
  return option;
}

export const dataDirOption = () =>
  configOption(
    'dataDir',
    '--data-dir <dir>',
    'data directory (SQLite database, local object store, secrets)',
  );

export const logLevelOption = () =>
  configOption('logLevel', '--log-level <level>', 'log level').choices(LOG_LEVELS);

/** Show a {@link configOption}'s variable in help exactly as commander shows `.env()`. */
export function showConfigEnvInHelp(program: Command): Command {
  return program.configureHelp({
    optionDescription(this: Help, option: Option): string {
      const envVar = envOfOption.get(option);
      const shown =
        envVar === undefined
          ? option
          : Object.assign(Object.create(Object.getPrototypeOf(option)) as Option, option, {
              envVar,
            });
      return Help.prototype.optionDescription.call(this, shown);
    },
  });
}

export const print = (value: unknown, json: boolean, text: () => string) =>
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
