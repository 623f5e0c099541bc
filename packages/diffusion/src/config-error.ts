/**
 * The error every config check throws: a value that is not one of the valid ones, a key the
 * config does not have, or a number out of range. The message names the config and lists what is
 * valid, so a typo in a manifest is fixed from the message alone. It is the workspace's one
 * ConfigError: the coordinator's configuration loader throws it too.
 */
export class ConfigError extends Error {
  /** Stable code, for callers that act on codes (the coordinator CLI prints these as user errors). */
  static readonly CODE = 'config_error';
  readonly code = ConfigError.CODE;
  override readonly name = 'ConfigError';
}

/** Throws a {@link ConfigError} unless `value` is one of `valid` (listed in the message). */
export function assertOneOf<T extends string>(
  value: unknown,
  valid: readonly T[],
  what: string,
): asserts value is T {
  if (typeof value !== 'string' || !(valid as readonly string[]).includes(value)) {
    throw new ConfigError(`unknown ${what} ${JSON.stringify(value)}; valid: ${valid.join(', ')}`);
  }
}

/** Throws a {@link ConfigError} if `config` has a key outside `valid` (listed in the message). */
export function assertKnownKeys(config: object, valid: readonly string[], what: string): void {
  for (const key of Object.keys(config)) {
    if (!valid.includes(key)) {
      throw new ConfigError(`unknown ${what} key "${key}"; valid: ${valid.join(', ')}`);
    }
  }
}

/** Throws a {@link ConfigError} unless `value` is a finite number with `min <= value <= max`. */
export function assertInRange(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new ConfigError(`${what} must be a number in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

/** Throws a {@link ConfigError} unless `value` is an integer with `min <= value <= max`. */
export function assertInteger(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${what} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}
