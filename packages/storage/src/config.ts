/**
 * Choosing a store from configuration, so the coordinator's startup code is one call and the
 * embedded directory store stays the zero-configuration default.
 */
import { LocalObjectStore, type LocalObjectStoreOptions } from './local-store.js';
import { S3ObjectStore, type S3ObjectStoreOptions } from './s3-store.js';

export type LocalObjectStoreConfig = { kind: 'local' } & LocalObjectStoreOptions;
export type S3ObjectStoreConfig = { kind: 's3' } & S3ObjectStoreOptions;
export type ObjectStoreConfig = LocalObjectStoreConfig | S3ObjectStoreConfig;

/** Build the store a config describes; the return type follows `kind`. */
export function createObjectStore(config: LocalObjectStoreConfig): LocalObjectStore;
export function createObjectStore(config: S3ObjectStoreConfig): S3ObjectStore;
export function createObjectStore(config: ObjectStoreConfig): LocalObjectStore | S3ObjectStore;
export function createObjectStore(config: ObjectStoreConfig): LocalObjectStore | S3ObjectStore {
  switch (config.kind) {
    case 'local': {
      const { kind: _kind, ...options } = config;
      return new LocalObjectStore(options);
    }
    case 's3': {
      const { kind: _kind, ...options } = config;
      return new S3ObjectStore(options);
    }
  }
}

function parseBoolean(name: string, value: string): boolean {
  const normalized = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(normalized)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(normalized)) return false;
  throw new TypeError(`${name} must be true or false, got ${JSON.stringify(value)}`);
}

const S3_ONLY_VARIABLES = [
  'ARCHIPELAGO_S3_PREFIX',
  'ARCHIPELAGO_S3_ENDPOINT',
  'ARCHIPELAGO_S3_REGION',
  'ARCHIPELAGO_S3_FORCE_PATH_STYLE',
] as const;

/**
 * S3 when `ARCHIPELAGO_S3_BUCKET` is set (with `ARCHIPELAGO_S3_PREFIX`, `ARCHIPELAGO_S3_ENDPOINT`,
 * `ARCHIPELAGO_S3_REGION` or else `AWS_REGION`, `ARCHIPELAGO_S3_FORCE_PATH_STYLE`; credentials
 * come from the SDK's default chain, e.g. `AWS_ACCESS_KEY_ID`), otherwise the local store from
 * `defaults`. Setting an S3 variable without a bucket throws, rather than silently writing
 * checkpoints to local disk.
 */
export function objectStoreConfigFromEnv(
  env: Readonly<Record<string, string | undefined>>,
  defaults: LocalObjectStoreOptions,
): ObjectStoreConfig {
  const bucket = env.ARCHIPELAGO_S3_BUCKET?.trim();
  if (!bucket) {
    const stray = S3_ONLY_VARIABLES.filter((name) => env[name]?.trim());
    if (stray.length > 0) {
      throw new TypeError(`${stray.join(', ')} set without ARCHIPELAGO_S3_BUCKET`);
    }
    return { kind: 'local', ...defaults };
  }
  const prefix = env.ARCHIPELAGO_S3_PREFIX?.trim();
  const endpoint = env.ARCHIPELAGO_S3_ENDPOINT?.trim();
  const region = env.ARCHIPELAGO_S3_REGION?.trim() || env.AWS_REGION?.trim();
  const forcePathStyle = env.ARCHIPELAGO_S3_FORCE_PATH_STYLE;
  return {
    kind: 's3',
    bucket,
    ...(prefix ? { prefix } : {}),
    ...(endpoint ? { endpoint } : {}),
    ...(region ? { region } : {}),
    ...(forcePathStyle === undefined
      ? {}
      : { forcePathStyle: parseBoolean('ARCHIPELAGO_S3_FORCE_PATH_STYLE', forcePathStyle) }),
  };
}
